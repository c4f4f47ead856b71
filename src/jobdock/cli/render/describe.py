"""``jobdock describe``'s view of a job, for people (as ``kubectl
describe``): its key fields one per line, its attempts with how each ended,
and its events, the moments its record tells of (submitted, each attempt's
start and end, a stop asked for, the next retry, the end). ``inspect``
prints the whole record for programs. Imports the models and the CLI's
times and output."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from jobdock.cli.render.jobs import labels_text, status
from jobdock.cli.render.output import STATE_STYLES
from jobdock.cli.render.times import ago, local_time, span
from jobdock.models.states import Reason

if TYPE_CHECKING:
    from jobdock.models import Attempt, Job


def outcome(attempt: Attempt) -> str:
    """How an attempt ended: ``exit 3``, ``signal 9``, ``timeout``, ...;
    ``running`` while it has not."""
    if attempt.finished_at is None:
        return "running"
    if attempt.reason is Reason.EXITED or (
        attempt.reason is None and attempt.exit_code is not None
    ):
        return f"exit {attempt.exit_code}"
    if attempt.reason is Reason.SIGNALED:
        return f"signal {attempt.signal}"
    text = attempt.reason.value if attempt.reason else "ended"
    if attempt.signal is not None:
        text += f" (signal {attempt.signal})"
    elif attempt.exit_code is not None:
        text += f" (exit {attempt.exit_code})"
    return text


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return span(max(0.0, (end - start).total_seconds()))


def _styled(text: str, colour: bool) -> str:
    """``text`` in its state's colour (by its first word), when ``colour``."""
    style = STATE_STYLES.get(text.split(" ", 1)[0], "")
    if not colour or not style:
        return text
    words = style.split()
    colours = [word for word in words if word not in ("bold", "dim")]
    return typer.style(
        text, fg=colours[0] if colours else None, bold="bold" in words, dim="dim" in words
    )


def _fields(job: Job, colour: bool) -> Iterator[tuple[str, str]]:
    spec = job.spec
    yield "Name", job.name or "-"
    yield "ID", job.id
    yield "Owner", job.owner
    yield "State", _styled(status(job), colour)
    if job.message:
        yield "Message", job.message
    if job.cancel_requested and not job.terminal:
        yield "Stop", "requested; waiting for the job to end"
    yield "Image", spec.image or "-"
    yield "Command", shlex.join(spec.command) if spec.command else "-"
    yield "Working dir", spec.cwd or "-"
    yield "Labels", labels_text(job.labels) or "-"
    yield "Created", f"{local_time(job.created_at)} ({ago(job.created_at)})"
    yield "Started", local_time(job.started_at)
    yield "Finished", local_time(job.finished_at)
    if job.next_attempt_at is not None:
        yield "Next attempt", local_time(job.next_attempt_at)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows under a header, columns padded to line up, indented by two."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _attempts(job: Job) -> list[str]:
    if not job.attempts:
        return ["  <none>"]
    rows = [
        (
            str(attempt.number),
            attempt.worker or "-",
            local_time(attempt.started_at),
            _took(attempt.started_at, attempt.finished_at) or "-",
            outcome(attempt),
            attempt.message or "",
        )
        for attempt in job.attempts
    ]
    return _table(("#", "WORKER", "STARTED", "TOOK", "OUTCOME", "MESSAGE"), rows)


def inputs_lines(job: Job) -> list[str]:
    """What the latest started attempt really ran (its pinned inputs)."""
    pinned = next((a.inputs for a in reversed(job.attempts) if a.inputs is not None), None)
    if pinned is None:
        return []
    rows: list[tuple[str, str]] = []
    if pinned.image is not None:
        rows.append(("Image", f"{pinned.image} = {pinned.image_digest or '?'}"))
    if pinned.entrypoint:
        rows.append(("Entrypoint", shlex.join(pinned.entrypoint)))
    rows.append(("Command", shlex.join(pinned.command) if pinned.command else "-"))
    rows.append(("Env", " ".join(pinned.env) or "-"))
    if pinned.stdin_bytes is None:
        rows.append(("Stdin", "streamed"))
    else:
        rows.append(("Stdin", f"{pinned.stdin_bytes} bytes, sha256 {pinned.stdin_sha256}"))
    rows.append(("Working dir", pinned.cwd or "-"))
    rows.append(("User", pinned.user or "-"))
    limits = " ".join(f"{key}={value}" for key, value in pinned.limits.items())
    rows.append(("Limits", limits or "-"))
    rows.append(("Isolation", pinned.isolation or "-"))
    rows.append(("Runtime", pinned.runtime or "-"))
    width = max(len(key) for key, _ in rows) + 2
    return ["", "Ran with:", *(f"  {key + ':':<{width}}{value}" for key, value in rows)]


def events(job: Job) -> list[tuple[datetime, str]]:
    """What happened to the job, oldest first, as its record tells it."""
    found = [(job.created_at, "submitted")]
    for attempt in job.attempts:
        if attempt.started_at is not None:
            where = f" on {attempt.worker}" if attempt.worker else ""
            found.append((attempt.started_at, f"attempt {attempt.number} started{where}"))
        if attempt.finished_at is not None:
            found.append((attempt.finished_at, f"attempt {attempt.number}: {outcome(attempt)}"))
    if job.next_attempt_at is not None:
        found.append((job.next_attempt_at, f"attempt {job.attempt + 1} due"))
    if job.finished_at is not None:
        found.append((job.finished_at, f"finished: {status(job).split(' in ')[0]}"))
    return sorted(found, key=lambda item: item[0])


def _when(moment: datetime) -> str:
    ahead = moment.timestamp() - time.time()
    return f"in {span(ahead)}" if ahead > 0 else ago(moment)


def describe_lines(job: Job, colour: bool) -> list[str]:
    """The whole view, line by line."""
    fields = list(_fields(job, colour))
    width = max(len(key) for key, _ in fields) + 2
    lines = [f"{key + ':':<{width}}{value}" for key, value in fields]
    lines += ["", "Attempts:", *_attempts(job), *inputs_lines(job), "", "Events:"]
    lines += _table(("WHEN", "EVENT"), [(_when(at), text) for at, text in events(job)])
    return lines
