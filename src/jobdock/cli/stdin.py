"""``jobdock run -i``: this command's stdin sent to the job as it is read,
as ``docker run -i`` does. A thread reads it in pieces of at most
:data:`PIECE` bytes (what a read returns, so a line typed at a terminal goes
at once) and sends each before reading the next, so however much is piped
in, no more than a few pieces are in memory; end-of-file closes the job's
stdin. The job may start, and answer, while the input still comes.

If the job ends before reading all of it, the rest is not sent. If the
server refuses the input (more than its ``max_stdin_stream``), the job is
stopped and ``run`` says why.

Imports the client.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING

from jobdock.errors import JobdockError

if TYPE_CHECKING:
    from jobdock.client import Client

#: The most read from stdin at once.
PIECE = 64 * 1024
STDIN = 0


def pieces(fd: int) -> Iterator[bytes]:
    """What ``fd`` gives, a read at a time, until end-of-file."""
    while piece := os.read(fd, PIECE):
        yield piece


class StdinSender:
    """Sends this process's stdin to a job from a thread of its own (a
    daemon: a read that waits for a terminal never keeps the command alive)."""

    def __init__(self, client: Client, job_id: str) -> None:
        self._client = client
        self._job_id = job_id
        #: Why the input was refused, if it was (and the job then stopped).
        self.error: JobdockError | None = None
        self._thread = threading.Thread(target=self._send, name="jobdock-stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        """Wait until the whole input is sent (or refused)."""
        self._thread.join()

    def _send(self) -> None:
        try:
            # fd 0 itself: with stdin closed, sys.stdin is None.
            self._client.send_stdin(self._job_id, pieces(STDIN))
        except OSError:
            # No stdin to read (closed): the job gets end-of-file.
            with contextlib.suppress(JobdockError):
                self._client.send_stdin(self._job_id, [])
        except JobdockError as exc:
            if self._job_ended():
                return  # it read what it wanted
            self.error = exc
            with contextlib.suppress(JobdockError):
                self._client.cancel(self._job_id)
        except (RuntimeError, CancelledError):
            pass  # the command is ending (the job ended first): its client has closed

    def _job_ended(self) -> bool:
        try:
            return self._client.get(self._job_id).terminal
        except JobdockError:
            return False
        except (RuntimeError, CancelledError):
            return True  # the client has closed: the command ends with the job
