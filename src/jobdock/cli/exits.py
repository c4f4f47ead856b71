"""How a command ends: jobdock's own exit statuses, the one-line failure a
command raises to stop with one, a usage error as one line, and the exit
status a finished job gives ``jobdock run`` and ``wait``.

Imports the foundation only (errors; models, httpx when a command has loaded
them) and typer's exceptions.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, NoReturn

from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from jobdock.errors import JobdockError, ServerUnreachable

if TYPE_CHECKING:
    from jobdock.models import Job

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
    """The error's message on one line (drivers' messages span several); a
    server nobody answers at says how to start one."""
    if isinstance(exc, ServerUnreachable) and (url := _nobody_answers_at(exc)):
        return (
            f"no jobdock server answers at {url} "
            "(start one with 'jobdock serve', or set --url / JOBDOCK_URL)"
        )
    return " ".join(exc.message.split())


_CANNOT_REACH = re.compile(r"cannot reach the jobdock server at (\S+): ")


def _nobody_answers_at(exc: ServerUnreachable) -> str | None:
    """The URL at which no server took the connection, or None when one did
    (a TLS failure, a connection lost mid-answer: the client's message stays)."""
    import ssl

    import httpx  # loaded by the client that raised exc

    match = _CANNOT_REACH.match(exc.message)
    cause = exc.__context__
    if match is None or not isinstance(cause, httpx.ConnectError):
        return None
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return None
        cause = cause.__context__
    return match.group(1)


def exit_code_of(job: Job) -> int:
    """The exit status ``jobdock run`` and ``wait`` give for a finished job."""
    from jobdock.models import JobState, Reason  # loaded with the job

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


def usage_error(exc: ClickException) -> NoReturn:
    """Exit as the command line's parser says (status 2 for a usage error),
    with one line on stderr naming the option or argument as click's message
    does, and where the help is. ``jobdock`` alone (or a group alone) prints
    the help instead, as typer does."""
    if isinstance(exc, NoArgsIsHelpError):
        if exc.message.strip():  # without rich; rich has printed it already
            sys.stdout.write(exc.message + "\n")
        sys.exit(exc.exit_code)
    text = " ".join(exc.format_message().split()).rstrip(".")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    ctx = exc.ctx if isinstance(exc, UsageError) else None
    help_hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    sys.stderr.write(f"jobdock: error: {text}{help_hint}\n")
    sys.exit(exc.exit_code)
