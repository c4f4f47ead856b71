"""The Runtime interface: how one attempt of a job executes.

A runtime starts an Execution; the worker reads its output, waits for its
exit and signals it. Stop-with-grace, timeouts and recording the outcome are
the worker's, so every runtime gets them the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobdock.models import JobSpec, Reason, Stream


@dataclass(frozen=True, slots=True)
class Accounting:
    """How an attempt was confined and what it used."""

    #: e.g. 'cgroup v1', 'cgroup v2+namespaces', or 'none'.
    isolation: str = "none"
    #: The limits that applied (field -> value), as in the spec's resources.
    limits: Mapping[str, Any] | None = None
    peak_memory: int | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How the main process ended: an exit code, or the signal that killed it.

    ``reason`` is set when the runtime knows why better than the exit does
    (e.g. ``oom``: a SIGKILL from the kernel's OOM killer); ``message`` then
    says it in words. A ``message`` without a ``reason`` is a remark added to
    the outcome (e.g. that it ran with less isolation than it asked for).
    ``limit`` says which limit the job ran into (e.g. that it reached its
    process limit): the outcome's message leads with it, whatever else
    ended the job (a fork bomb that is then killed by its timeout).
    """

    exit_code: int | None = None
    signal: int | None = None
    reason: Reason | None = None
    message: str | None = None
    limit: str | None = None
    #: Set by runtimes that confine and measure their jobs; not part of
    #: how the process ended, so statuses compare without it.
    accounting: Accounting | None = field(default=None, compare=False)


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


class Execution(Protocol):
    """One running attempt."""

    pid: int | None
    #: When the process started: boot-relative clock ticks (with ``pid``,
    #: names the process even after its pid is reused), and epoch seconds.
    pid_start: int | None
    started_at: float

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
        self, spec: JobSpec, stdin: bytes, env: Mapping[str, str], info: AttemptInfo
    ) -> Execution:
        """Start the job's command; raises SpawnError when it cannot start."""
        ...

    def close(self) -> None:
        """Release what the runtime holds (threads, descriptors)."""
