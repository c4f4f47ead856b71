"""A job written out so that it can be run again elsewhere: as a job file
(YAML or JSON, for ``jobdock run -f``), as a ``docker run`` line (an image
job), or as a shell line (a process job). Secrets are named, never given:
a job's spec holds only their names.

Imports nothing of jobdock's: it works on the spec as the API shows it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

#: The spec fields a job file need not carry (the server sets them again).
_RUNTIME_ONLY = ("idempotency_key",)


def job_file(spec: Mapping[str, Any], fmt: str) -> str:
    """The spec as a job file in ``fmt`` (yaml or json), its defaults left out."""
    document = {key: value for key, value in spec.items() if key not in _RUNTIME_ONLY}
    if fmt == "json":
        return json.dumps(document, indent=2) + "\n"
    import yaml

    text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return text


def docker_line(spec: Mapping[str, Any], image: str) -> str:
    """A ``docker run`` of the image job ``spec``, of ``image`` (the reference
    to run: pinned by digest where the job recorded one)."""
    words = ["docker", "run", "--rm"]
    if spec.get("stdin") or spec.get("stdin_base64") or spec.get("stdin_stream"):
        words.append("-i")
    resources = spec.get("resources") or {}
    for flag, key in (("--cpus", "cpus"), ("--memory", "memory"), ("--pids-limit", "pids")):
        if resources.get(key) is not None:
            words += [flag, str(resources[key])]
    for flag, key in (
        ("--network", "network"),
        ("--user", "user"),
        ("--workdir", "cwd"),
        ("--runtime", "container_runtime"),
    ):
        if spec.get(key):
            words += [flag, str(spec[key])]
    for name, value in (spec.get("env") or {}).items():
        words += ["-e", f"{name}={value}"]
    for key, value in (spec.get("labels") or {}).items():
        words += ["--label", f"{key}={value}"]
    for cache in spec.get("caches") or []:
        words += ["-v", f"{cache['name']}:{cache['path']}"]
    entrypoint = spec.get("entrypoint")
    if entrypoint:
        words += ["--entrypoint", entrypoint[0]]
    words.append(image)
    words += (entrypoint or [])[1:] + list(spec.get("command") or [])
    return _with_notes(shlex.join(words), spec)


def shell_line(spec: Mapping[str, Any]) -> str:
    """A shell line running the process job ``spec`` as the job ran it: in
    its directory, with its environment and its timeout (not its limits or
    isolation, which a note names)."""
    words: list[str] = []
    env = spec.get("env") or {}
    if env:
        words += ["env", *(f"{name}={value}" for name, value in env.items())]
    timeout = spec.get("timeout")
    if timeout is not None:
        grace = spec.get("kill_grace", 10.0)
        words += ["timeout", f"--kill-after={grace:g}s", f"{timeout:g}s"]
    words += list(spec.get("command") or [])
    line = shlex.join(words)
    if spec.get("cwd"):
        line = f"cd {shlex.quote(spec['cwd'])} && {line}"
    if spec.get("stdin") is not None:
        line = f"printf %s {shlex.quote(spec['stdin'])} | {line}"
    notes = [
        f"{key}: {json.dumps(spec[key])}" for key in ("resources", "isolation") if spec.get(key)
    ]
    return _with_notes(line, spec, notes)


def _with_notes(line: str, spec: Mapping[str, Any], notes: list[str] | None = None) -> str:
    """``line`` after comment lines naming what it does not carry."""
    found = list(notes or [])
    secrets = [ref["name"] for ref in spec.get("secrets") or []]
    if secrets:
        found.append(f"secrets (give their values yourself): {', '.join(secrets)}")
    return "".join(f"# not carried: {note}\n" for note in found) + line + "\n"
