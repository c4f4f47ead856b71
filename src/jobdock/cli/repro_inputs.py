"""What ``jobdock repro`` runs: a finished job's spec as its latest attempt
really ran it (the pinned image digest, the spec's stdin read back), made
runnable here, and the local values of the secrets it used. The server
never gives a secret's value: only its name, from the spec.

Imports the models, the CLI's exits and, to look for the pinned image, the
container engine's client.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobdock.cli.exits import EXIT_JOBDOCK, fail
from jobdock.errors import JobdockError

if TYPE_CHECKING:
    from jobdock.models import AttemptInputs, Job

#: Fields that placed the job in the server's queue, not what it ran: a
#: repro runs once, now, on this machine's only worker (and keeps its image).
_QUEUE_ONLY = (
    "idempotency_key",
    "run_at",
    "allow_past",
    "retry",
    "requires",
    "priority",
    "concurrency_key",
    "concurrency_limit",
    "queue_timeout",
    "total_timeout",
    "keep_for",
    "remove_image",
)


def pinned(job: Job) -> AttemptInputs | None:
    """What the job's latest started attempt really ran."""
    return next((a.inputs for a in reversed(job.attempts) if a.inputs is not None), None)


def repro_spec(job: Job, stdin: bytes, image: str | None) -> dict[str, Any]:
    """The spec to run here: the job's, without its queue-only fields, with
    its stdin, and its image by ``image`` (the pinned digest) and never
    pulled by the server (repro pulls, with --pull, before)."""
    spec: dict[str, Any] = job.spec.model_dump(mode="json", exclude_defaults=True)
    for key in _QUEUE_ONLY:
        spec.pop(key, None)
    if stdin:
        import base64

        spec.pop("stdin", None)
        spec["stdin_base64"] = base64.b64encode(stdin).decode()
    if image is not None:
        spec["image"] = image
        spec["pull"] = "never"
    return spec


def secret_values(
    names: list[str], given: list[str], env_file: str | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """The local values of the secrets ``names``: from ``--secret NAME=VAR``
    (``given``, the variable VAR of this environment), then ``--env-file``
    (NAME=VALUE lines), then a prompt when stdin is a terminal. Those with
    no value are left out."""
    values: dict[str, str] = {}
    for pair in given:
        name, sep, var = pair.partition("=")
        if not sep or not name or not var:
            fail(f"--secret {pair!r}: give NAME=VAR (VAR: a variable of this environment)", 2)
        if name not in names:
            fail(
                f"--secret {name}: the job uses no secret {name} (it uses: "
                f"{', '.join(names) or 'none'})",
                2,
            )
        if var not in environ:
            fail(f"--secret {name}={var}: {var} is not set in this environment", 2)
        values[name] = environ[var]
    if env_file is not None:
        for name, value in _env_file(env_file).items():
            if name in names:
                values.setdefault(name, value)
    missing = [name for name in names if name not in values]
    if missing and sys.stdin.isatty() and sys.stderr.isatty():
        for name in missing:
            value = getpass.getpass(f"value of secret {name} (empty: none): ")
            if value:
                values[name] = value
    return values


def _env_file(path: str) -> dict[str, str]:
    """NAME=VALUE lines (blank lines and # comments skipped)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--env-file {path}: {exc}", 2)
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not name.strip():
            fail(f"--env-file {path}:{number}: not NAME=VALUE", 2)
        found[name.strip()] = value.strip().strip("'\"")
    return found


def without(spec: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """``spec`` without the secrets ``names``."""
    kept = [ref for ref in spec.get("secrets") or [] if ref["name"] not in names]
    return {**spec, "secrets": kept} if kept else {k: v for k, v in spec.items() if k != "secrets"}


def local_image(docker_host: str, digest: str, written: str, pull: bool) -> None:
    """Make sure this machine's engine has the image ``digest`` (``written``:
    the reference the job gave), pulling it by digest with ``pull``; else
    stop saying how to get it. Never another image of the same name."""
    import asyncio

    from jobdock.runtimes.engine import Engine, EngineAddress

    async def check() -> str | None:
        async with Engine(EngineAddress(docker_host)) as engine:
            if await engine.image_exists(digest):
                return None
            if not pull:
                return "missing"
            if "@" not in digest:
                return "unpullable"
            await engine.pull(digest)
            return None

    try:
        problem = asyncio.run(check())
    except JobdockError as exc:
        fail(f"image {digest}: {' '.join(exc.message.split())}", EXIT_JOBDOCK)
    if problem == "missing":
        how = (
            f"add --pull to pull it by digest (docker pull {digest})"
            if "@" in digest
            else "it was built or loaded on the server's engine and has no registry digest: "
            f"load that exact image here (docker save {digest} there, docker load here)"
        )
        fail(
            f"the job ran image {written} as {digest}, which this machine's engine "
            f"({docker_host}) does not have: {how}",
            EXIT_JOBDOCK,
        )
    if problem == "unpullable":
        fail(
            f"the job ran image {written} as {digest}, an image id with no registry digest: "
            f"--pull cannot fetch it; load that exact image here (docker save / docker load)",
            EXIT_JOBDOCK,
        )
