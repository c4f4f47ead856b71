"""``jobdock repro --compare``'s verdict: whether the run here matched the
original, exit code, stdout and stderr (size and sha256, and the first line
where they part) and duration side by side. Imports nothing of jobdock's."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """What one run of the job gave."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    seconds: float | None


def _digest(data: bytes) -> str:
    return f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"


def first_difference(here: bytes, there: bytes) -> str:
    """Where ``here`` first parts from ``there``: 'line N: ... against ...'."""
    ours, theirs = here.splitlines(keepends=True), there.splitlines(keepends=True)
    for number, (a, b) in enumerate(zip(ours, theirs, strict=False), start=1):
        if a != b:
            return f"line {number}: {_shown(a)} here, {_shown(b)} originally"
    number = min(len(ours), len(theirs)) + 1
    if len(ours) > len(theirs):
        return f"line {number}: {_shown(ours[number - 1])} here, nothing originally"
    return f"line {number}: nothing here, {_shown(theirs[number - 1])} originally"


def _shown(line: bytes, width: int = 60) -> str:
    text = line.decode("utf-8", "replace")
    return repr(text if len(text) <= width else text[:width] + "...")


def _stream(name: str, here: bytes, there: bytes) -> tuple[bool, str]:
    if here == there:
        return True, f"  {name:<9} same ({_digest(here)})"
    return False, (
        f"  {name:<9} differs: {_digest(here)} here, {_digest(there)} originally; "
        f"first at {first_difference(here, there)}"
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def verdict(here: Run, original: Run, job_id: str) -> list[str]:
    """The comparison, line by line; the last says ``same`` or ``different``."""
    same_code = here.exit_code == original.exit_code
    code = (
        f"  {'exit code':<9} same ({here.exit_code})"
        if same_code
        else f"  {'exit code':<9} differs: {here.exit_code} here, {original.exit_code} originally"
    )
    out_same, out = _stream("stdout", here.stdout, original.stdout)
    err_same, err = _stream("stderr", here.stderr, original.stderr)
    took = (
        f"  {'duration':<9} {_seconds(here.seconds)} here, {_seconds(original.seconds)} originally"
    )
    same = same_code and out_same and err_same
    return [
        f"compared with job {job_id}:",
        code,
        out,
        err,
        took,
        f"verdict: {'same' if same else 'different'}",
    ]
