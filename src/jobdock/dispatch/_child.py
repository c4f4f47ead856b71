"""The child process that runs dispatch templates' jq filters.

libjq cannot be interrupted from another thread, so filters run here, in a
process the server can kill (api requests wait on it with a deadline; see
``pool.py``). It is started with an empty environment (jq's ``$ENV`` and
``env`` would otherwise show the server's) and a memory limit, imports only
the standard library and ``jq``, and reads one request per line on stdin:

    {"program": TEXT, "input": VALUE, "vars": {NAME: VALUE}, "max_bytes": N}

answering one line on stdout: ``{"output": TEXT}`` (the filter's one result,
as JSON text) or ``{"error": "failed" | "too_large", "message": TEXT}``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import resource
import secrets
import string
import sys
import time
from typing import Any

import jq

#: The variables a filter sees; each is bound from the request's "vars".
#: ``PATH`` is docker-job-dispatcher's name for ``path``.
VARIABLES = ("path", "subpath", "query", "headers", "env", "request_id", "body_sha256", "PATH")
#: What the extras below read: the hashes known so far and this request's cuid2.
HIDDEN = ("__hashes", "__cuid2")
#: The formats jobdock adds to jq's (docker-job-dispatcher's): the hash, in
#: hex, of the input's text (a string itself, anything else as JSON).
HASHES = {"md5": hashlib.md5, "sha1": hashlib.sha1}
#: The key of the error a hash not yet known raises (see ``run``).
NEED = "__jobdock_needs_hash__"
#: docker-job-dispatcher's jq extras, on one line (so that a filter's line
#: numbers stay its own): ``@md5`` and ``@sha1`` (jq compiles a format
#: ``@x`` to ``format("x")``, which this ``format`` shadows), ``cuid2`` and
#: ``env``.
EXTRAS = (
    "def _jobdock_format($f): format($f); "
    'def format($f): if $f == "md5" or $f == "sha1" then tostring as $s '
    f"| ($__hashes[$f][$s] // error({{{NEED}: $f, text: $s}})) "
    "else _jobdock_format($f) end; "
    "def cuid2: $__cuid2; def env: $env; "
)
#: Before the operator's filter: bind the variables, hide jq's own view of
#: the environment behind the allow-listed one, and run the filter on the body.
PRELUDE = (
    ".vars as {"
    + ", ".join(f"${name}" for name in (*VARIABLES, *HIDDEN))
    + "} | $env as $ENV | "
    + EXTRAS
    + ".input | ("
)
#: The most address space the child may use; a filter that builds a huge
#: value fails here rather than taking the server's memory.
MEMORY_LIMIT = 512 * 1024 * 1024
#: The most runs of one request that each find a hash to compute.
MAX_RERUNS = 16


def wrap(program: str) -> str:
    """The operator's filter inside the prelude (on a line of its own, so
    that a trailing comment ends before the closing parenthesis). Wrapping
    also makes ``import`` and ``include`` directives a syntax error: a
    filter cannot load modules from the server's file system."""
    return f"{PRELUDE}\n{program}\n)"


def text_of(value: Any) -> str:
    """jq's ``tostring`` of a value, as near as Python writes it."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def hashes_of(text: str) -> dict[str, str]:
    """Each extra hash format's digest of ``text``."""
    return {name: digest(text.encode()).hexdigest() for name, digest in HASHES.items()}


def cuid2() -> str:
    """A new id in cuid2's shape: 24 characters, a lower-case letter and
    then letters and digits, from a hash of the time, a counter and
    randomness."""
    seed = f"{time.time_ns()}{next(_COUNTER)}{secrets.token_hex(16)}".encode()
    number = int.from_bytes(hashlib.sha3_512(seed).digest(), "big")
    digits: list[str] = []
    while len(digits) < 23:
        number, digit = divmod(number, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[digit])
    return secrets.choice(string.ascii_lowercase) + "".join(digits)


_COUNTER = itertools.count()


def _needed(exc: ValueError) -> tuple[str, str] | None:
    """The format and text of a hash the filter asked for and did not have."""
    try:
        raised = json.loads(str(exc))
    except ValueError:
        return None
    if isinstance(raised, dict) and raised.get(NEED) in HASHES:
        return raised[NEED], str(raised.get("text", ""))
    return None


def run(compiled: Any, request: dict[str, Any]) -> dict[str, str]:
    """The answer to one request, run with its program compiled. jq cannot
    call Python, so a hash is looked up in ``$__hashes``: the body's are
    there from the start, and a filter that hashes another text fails with
    an error naming it, which is computed and the filter run again."""
    body = text_of(request["input"])
    known = {name: {body: digest} for name, digest in hashes_of(body).items()}
    variables = {**request["vars"], "__hashes": known, "__cuid2": cuid2()}
    for _ in range(MAX_RERUNS):
        try:
            outputs = _outputs(compiled, variables, request["input"])
            break
        except ValueError as exc:
            needed = _needed(exc)
            if needed is None:
                raise
            name, text = needed
            known[name][text] = HASHES[name](text.encode()).hexdigest()
    else:
        return {"error": "failed", "message": f"the filter hashed more than {MAX_RERUNS} texts"}
    if not outputs:
        return {"error": "failed", "message": "the filter produced no output"}
    if len(outputs) > 1:
        return {"error": "failed", "message": "the filter produced more than one output"}
    first = outputs[0]
    text = json.dumps(first, separators=(",", ":"))
    if len(text) > request["max_bytes"]:
        return {
            "error": "too_large",
            "message": f"the filter's output is more than {request['max_bytes']} bytes",
        }
    return {"output": text}


def _outputs(compiled: Any, variables: dict[str, Any], value: Any) -> list[Any]:
    """The filter's first two outputs (a third is never needed)."""
    results = iter(compiled.input_value({"vars": variables, "input": value}))
    return list(itertools.islice(results, 2))


def main() -> None:
    """Answer requests until stdin closes."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    compiled: dict[str, Any] = {}
    for line in sys.stdin:
        request = json.loads(line)
        program = request["program"]
        try:
            if program not in compiled:
                if len(compiled) > 256:
                    compiled.clear()
                compiled[program] = jq.compile(wrap(program))
            answer = run(compiled[program], request)
        except (ValueError, MemoryError) as exc:
            answer = {"error": "failed", "message": str(exc).strip() or type(exc).__name__}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    os.environ.clear()
    main()
