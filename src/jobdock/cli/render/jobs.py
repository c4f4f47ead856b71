"""How ``jobdock ps`` and ``jobdock workers`` show their rows: the columns,
each cell as text, and the wider set ``-o wide`` adds; a job's status as
``ps`` and ``describe`` word it. Imports the states, the listed records and
the CLI's times and output (not the models: ``ps`` starts without them)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from jobdock.cli.render.output import print_documents, show_table, state_style
from jobdock.cli.render.times import ago, since, span
from jobdock.models.states import JobState, Reason

if TYPE_CHECKING:
    from jobdock.cli.listing import ListedJob, ListedWorker

_PS = ("JOB ID", "NAME", "IMAGE", "COMMAND", "CREATED", "STATUS")
_PS_WIDE = (*_PS, "OWNER", "ATTEMPT", "LABELS")
_WORKERS = ("WORKER", "LABELS", "HEARTBEAT", "RUNNING", "STATUS")
_WORKERS_WIDE = (*_WORKERS, "HOST", "JOBS")


class Timeline(Protocol):
    """What a job's status is made of: a :class:`jobdock.models.Job` or a
    :class:`~jobdock.cli.listing.ListedJob`."""

    @property
    def state(self) -> JobState: ...
    @property
    def terminal(self) -> bool: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def next_attempt_at(self) -> datetime | None: ...
    @property
    def reason(self) -> Reason | None: ...
    @property
    def exit_code(self) -> int | None: ...


def status(job: Timeline) -> str:
    """A job's state as ``ps`` shows it: with how long, and how it ended."""
    if job.state is JobState.RUNNING:
        return f"running {since(job.started_at)}" if job.started_at else "running"
    if job.state is JobState.RETRYING and job.next_attempt_at is not None:
        wait = max(0.0, job.next_attempt_at.timestamp() - time.time())
        return f"retrying in {span(wait)}"
    if not job.terminal:
        return job.state.value
    took = ""
    if job.started_at and job.finished_at:
        took = f" in {span((job.finished_at - job.started_at).total_seconds())}"
    if job.reason is Reason.EXITED:
        return f"{job.state.value} (exit {job.exit_code}){took}"
    return f"{job.state.value} ({job.reason.value if job.reason else '?'}){took}"


def labels_text(labels: dict[str, str]) -> str:
    """``k=v,k2=v2``, sorted by key."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _ps_row(job: ListedJob, wide: bool) -> tuple[str, ...]:
    command = " ".join(job.command)
    if not wide and len(command) > 40:
        command = command[:39] + "…"
    row = (job.id, job.name or "", job.image or "", command, ago(job.created_at), status(job))
    if not wide:
        return row
    return (*row, job.owner, str(job.attempt), labels_text(job.labels))


def show_jobs(jobs: Sequence[ListedJob], output: str) -> None:
    """``ps``'s listing in the ``-o`` format (``""``: the table)."""
    if output in ("json", "yaml"):
        print_documents([job.record for job in jobs], output)
        return
    wide = output == "wide"
    show_table(
        _PS_WIDE if wide else _PS,
        (_ps_row(job, wide) for job in jobs),
        wrap={"COMMAND", "LABELS"},
        styles={"STATUS": state_style},
    )


def _worker_row(item: ListedWorker, wide: bool) -> tuple[str, ...]:
    row = (
        item.id,
        labels_text(item.labels),
        ago(item.heartbeat_at),
        f"{item.busy}/{item.concurrency}",
        _worker_status(item),
    )
    return (*row, item.host, ",".join(item.running)) if wide else row


def _worker_status(item: ListedWorker) -> str:
    if item.stopped_at or item.state == "stopped":
        return "stopped"
    return "lost" if item.state == "lost" else f"up {since(item.started_at)}"


def show_workers(found: Sequence[ListedWorker], output: str) -> None:
    """``workers``'s listing in the ``-o`` format (``""``: the table)."""
    if output in ("json", "yaml"):
        print_documents([item.record for item in found], output)
        return
    wide = output == "wide"
    show_table(
        _WORKERS_WIDE if wide else _WORKERS,
        (_worker_row(item, wide) for item in found),
        wrap=True,
        overflow="fold",
        styles={"STATUS": state_style},
    )
