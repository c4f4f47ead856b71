"""The Runtime interface: how one attempt of a job executes.

A runtime starts an Execution; the worker reads its output, waits for its
exit and signals it. Stop-with-grace, timeouts and recording the outcome are
the worker's, so every runtime gets them the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from jobdock.errors import JobdockError
from jobdock.models import AttemptInputs, JobSpec, Stream
from jobdock.models.outcome import ExitStatus

#: What a job reads on its stdin: bytes given with the spec, or pieces as
#: they arrive (``stdin_stream``), each written before the next is asked
#: for; the job reads end-of-file after the last. Empty bytes: /dev/null.
Stdin = bytes | AsyncIterable[bytes]


@dataclass(frozen=True, slots=True)
class RunAs:
    """The identity a process job runs as: an unprivileged uid and gid of its
    owner's, no supplementary groups, umask 077, and a HOME of its own."""

    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """Which attempt of which job a runtime starts, and for whom."""

    job_id: str
    attempt: int
    owner: str = "anonymous"
    #: The identity its processes get; None: the server's own (auth off).
    run_as: RunAs | None = None


class AttemptLost(JobdockError):
    """Raised by :meth:`Execution.wait` when the attempt was lost through no
    fault of its job (a cluster's node failed, or the job was preempted):
    the worker gives it back to run again, as when a worker is lost. Never
    an answer of the server's."""

    code = "attempt_lost"


class Execution(Protocol):
    """One running attempt."""

    pid: int | None
    #: When the process started: boot-relative clock ticks (with ``pid``,
    #: names the process even after its pid is reused), and epoch seconds.
    pid_start: int | None
    started_at: float
    #: What the attempt really ran (recorded on it when it starts).
    inputs: AttemptInputs | None

    def output(self) -> AsyncIterator[list[tuple[Stream, bytes]]]:
        """Batches of output in arrival order; ends when both streams are closed.

        Not consuming it makes the job block on writing (backpressure).
        """
        ...

    async def wait(self) -> ExitStatus:
        """Wait for the main process to end."""
        ...

    def terminate(self) -> None:
        """Ask every process of the attempt to stop (SIGTERM)."""

    def kill(self) -> None:
        """Kill every process of the attempt (SIGKILL)."""

    async def close(self) -> None:
        """Release what the attempt holds (e.g. remove its container); called
        once its outcome is recorded."""


class Runtime(Protocol):
    """Starts attempts of jobs."""

    async def start(
        self, spec: JobSpec, stdin: Stdin, env: Mapping[str, str], info: AttemptInfo
    ) -> Execution:
        """Start the job's command; raises SpawnError when it cannot start."""
        ...

    def close(self) -> None:
        """Release what the runtime holds (threads, descriptors)."""
