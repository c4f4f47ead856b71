"""The one-line status ``run`` and ``wait`` keep on stderr while their job
is not simply running: queued, scheduled, in its stop grace or between
retries. On a terminal it is a spinner and a line redrawn in place; when
stderr is not a terminal, nothing (a log file gets no status noise).

Imports the client, the models and the CLI's rendering of times.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from jobdock.cli.render.times import span
from jobdock.errors import JobdockError
from jobdock.models.states import JobState

if TYPE_CHECKING:
    from jobdock.client import Client
    from jobdock.models import Job

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
#: How often the job is looked at, and the spinner turns.
_POLL = 0.5
_TURN = 0.1


def describe(job: Job, now: float) -> str | None:
    """What the status line says of a job; None while it just runs (or has ended)."""
    if job.state is JobState.QUEUED:
        reason = getattr(job, "waiting_reason", None)  # set by servers that know why
        return f"job {job.id} queued" + (f": {reason}" if reason else "")
    if job.state is JobState.SCHEDULED:
        when = job.spec.run_at
        if when is None:
            return f"job {job.id} scheduled"
        return f"job {job.id} scheduled to start in {span(max(0.0, when.timestamp() - now))}"
    if job.state is JobState.RETRYING:
        wait = ""
        if job.next_attempt_at is not None:
            wait = f" in {span(max(0.0, job.next_attempt_at.timestamp() - now))}"
        return f"job {job.id} retrying{wait} (attempt {job.attempt} ended: {job.message})"
    if job.state is JobState.RUNNING and job.cancel_requested:
        return f"job {job.id} stopping (SIGTERM sent; SIGKILL after its grace)"
    return None


class StatusLine:
    """A status line for one job on ``stream`` (stderr), kept by a thread
    while the ``with`` block runs; silent unless ``stream`` is a terminal."""

    def __init__(self, client: Client, job_id: str, stream: TextIO | None = None) -> None:
        self._client = client
        self._job_id = job_id
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._shown = False
        self._thread = threading.Thread(target=self._keep, name="jobdock-status", daemon=True)

    def __enter__(self) -> StatusLine:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        if self._enabled:
            self._thread.join(2 * _POLL)
        self.clear()

    def clear(self) -> None:
        """Take the line away."""
        with self._lock:
            self._clear()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No line while the block runs (it writes the job's own output)."""
        with self._lock:
            self._clear()
            yield

    def _clear(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False

    def _keep(self) -> None:
        text: str | None = None
        looked = 0.0
        turn = 0
        while not self._done.is_set():
            if time.monotonic() - looked >= _POLL:
                looked = time.monotonic()
                try:
                    text = describe(self._client.get(self._job_id), time.time())
                except JobdockError:
                    text = None
            if text is None:
                self.clear()
            else:
                self._draw(f"{_FRAMES[turn % len(_FRAMES)]} {text}")
                turn += 1
            self._done.wait(_TURN)

    def _draw(self, line: str) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._stream.write(f"\r\x1b[K{line}")
            self._stream.flush()
            self._shown = True
