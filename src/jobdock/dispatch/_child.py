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

import json
import os
import resource
import sys
from typing import Any

import jq

#: The variables a filter sees; each is bound from the request's "vars".
VARIABLES = ("path", "subpath", "query", "headers", "env", "request_id", "body_sha256")
#: Before the operator's filter: bind the variables, hide jq's own view of
#: the environment behind the allow-listed one, and run the filter on the body.
PRELUDE = (
    ".vars as {" + ", ".join(f"${name}" for name in VARIABLES) + "} | $env as $ENV | "
    "def env: $env; .input | ("
)
#: The most address space the child may use; a filter that builds a huge
#: value fails here rather than taking the server's memory.
MEMORY_LIMIT = 512 * 1024 * 1024


def wrap(program: str) -> str:
    """The operator's filter inside the prelude (on a line of its own, so
    that a trailing comment ends before the closing parenthesis). Wrapping
    also makes ``import`` and ``include`` directives a syntax error: a
    filter cannot load modules from the server's file system."""
    return f"{PRELUDE}\n{program}\n)"


def run(compiled: Any, request: dict[str, Any]) -> dict[str, str]:
    """The answer to one request, run with its program compiled."""
    results = iter(compiled.input_value({"vars": request["vars"], "input": request["input"]}))
    try:
        first = next(results)
    except StopIteration:
        return {"error": "failed", "message": "the filter produced no output"}
    try:
        next(results)
    except StopIteration:
        pass
    else:
        return {"error": "failed", "message": "the filter produced more than one output"}
    text = json.dumps(first, separators=(",", ":"))
    if len(text) > request["max_bytes"]:
        return {
            "error": "too_large",
            "message": f"the filter's output is more than {request['max_bytes']} bytes",
        }
    return {"output": text}


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
