"""Following a job from this terminal: its output copied here as it comes
(stdout to stdout, stderr to stderr); for ``jobdock run``, the first Ctrl-C
stops the job, a second detaches, and the job's end is the exit status.

Imports the client, the models and :mod:`jobdock.cli.exits`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from jobdock.cli.exits import EXIT_CANCELLED, EXIT_JOBDOCK, exit_code_of, fail, one_line
from jobdock.cli.status import StatusLine
from jobdock.errors import JobdockError
from jobdock.models.states import Reason, Stream

if TYPE_CHECKING:
    from jobdock.client import Client, Credentials

#: The ends whose message ``jobdock run`` prints: the job's own output cannot say why.
_SAID = (
    Reason.SPAWN_ERROR,
    Reason.TIMEOUT,
    Reason.WORKER_LOST,
    Reason.IMAGE_NOT_FOUND,
    Reason.OOM,
)


def attach(client: Client, job_id: str) -> int:
    """Stream a job's output here until it ends; the first Ctrl-C stops the job."""
    stopping = threading.Event()

    def on_interrupt(_signo: int, _frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        sys.stderr.write(f"jobdock: stopping job {job_id} (Ctrl-C again to detach)\n")
        url, credentials = client.url, client.credentials
        threading.Thread(
            target=lambda: _quietly_cancel(url, credentials, job_id), daemon=True
        ).start()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with StatusLine(client, job_id) as status:
            copy_output(client.logs(job_id, follow=True), status)
            job = client.wait(job_id)
    except KeyboardInterrupt:
        sys.stderr.write(f"jobdock: detached; job {job_id} goes on\n")
        return EXIT_CANCELLED
    except JobdockError as exc:
        fail(one_line(exc), EXIT_JOBDOCK)
    finally:
        signal.signal(signal.SIGINT, previous)
    if job.reason in _SAID:
        sys.stderr.write(f"jobdock: {job.message}\n")
    return exit_code_of(job)


def _quietly_cancel(url: str, credentials: Credentials, job_id: str) -> None:
    from jobdock.client import Client

    try:
        with Client(url, credentials=credentials) as client:
            client.cancel(job_id)
    except JobdockError:
        pass


def copy_output(pieces: Iterator[tuple[Stream, bytes]], status: StatusLine | None = None) -> None:
    """Write a job's output here as it comes: stdout to stdout, stderr to
    stderr (with no ``status`` line in its way)."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream, data in pieces:
        target = out if stream is Stream.STDOUT else err
        with status.paused() if status is not None else contextlib.nullcontext():
            target.write(data)
            target.flush()
