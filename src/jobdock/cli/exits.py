"""How a command ends: jobdock's own exit statuses, the one-line failure a
command raises to stop with one, and the exit status a finished job gives
``jobdock run`` and ``wait``.

Imports the foundation only (errors, models).
"""

from __future__ import annotations

from typing import NoReturn

from jobdock.errors import JobdockError
from jobdock.models import Job, JobState, Reason

#: ``jobdock run`` and ``wait`` exit with this when jobdock itself failed.
EXIT_JOBDOCK = 125
EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130


class Failure(Exception):
    """A command stops: ``main`` prints ``message`` on one line and exits ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.message = message
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop the command with ``message`` on stderr and exit status ``code``."""
    raise Failure(message, code)


def one_line(exc: JobdockError) -> str:
    """The error's message on one line (drivers' messages span several)."""
    return " ".join(exc.message.split())


def exit_code_of(job: Job) -> int:
    """The exit status ``jobdock run`` and ``wait`` give for a finished job."""
    if job.reason is Reason.TIMEOUT:
        return EXIT_TIMEOUT
    if job.exit_code is not None:
        return job.exit_code
    if job.signal is not None:
        return 128 + job.signal
    if job.reason is Reason.SPAWN_ERROR:
        return 126 if "Permission denied" in (job.message or "") else 127
    if job.state is JobState.CANCELLED:
        return EXIT_CANCELLED
    return EXIT_JOBDOCK
