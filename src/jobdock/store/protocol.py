"""The Store protocol: everything the API and the workers ask of persistence.

Every write an attempt makes names its job and attempt number (the fencing
token) and raises :class:`jobdock.errors.FencedOff` when a newer attempt owns
the job. One contract suite (tests/contract/test_store.py) runs against every
implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobdock.events import Events
from jobdock.models import Job, JobPage, JobSpec, JobState, Reason, Stream, WorkerRecord


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job, ready to be stored."""

    id: str
    spec: JobSpec
    stdin: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker has claimed: it runs attempt ``attempt`` under a lease."""

    job_id: str
    attempt: int
    spec: JobSpec
    stdin: bytes


@dataclass(frozen=True, slots=True)
class LogChunk:
    """Bytes of one stream, with their place in the stream and in both merged."""

    seq: int
    stream: Stream
    offset: int
    merged_offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class LogRead:
    """Chunks read from a job's log, and whether the attempt has ended.

    ``done`` is true when the attempt can write no more, so a follower that
    got no chunks past its offset may stop; ``terminal`` when the job, too,
    has ended (no later attempt will come).
    """

    attempt: int
    chunks: list[LogChunk]
    done: bool
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended."""

    state: JobState
    reason: Reason
    message: str
    finished_at: float
    exit_code: int | None = None
    signal: int | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    #: How the attempt was confined and what it used (see runtimes.base.Accounting).
    isolation: str | None = None
    limits: dict[str, Any] | None = None
    peak_memory: int | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Started:
    """Where an attempt's process runs, recorded once it has started."""

    pid: int | None
    pid_start: int | None
    host: str
    started_at: float


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """What a worker learns when it renews its leases."""

    lost: frozenset[str] = field(default_factory=frozenset)
    cancel: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class LostAttempt:
    """An attempt whose lease expired, resolved by the reaper."""

    job_id: str
    attempt: int
    host: str | None
    pid: int | None
    pid_start: int | None
    new_state: JobState


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker, as it registers itself."""

    id: str
    host: str
    labels: dict[str, str]
    concurrency: int
    started_at: float


class Store(Protocol):
    """Persistence of jobs, attempts and logs."""

    events: Events

    @property
    def shared(self) -> bool:
        """Whether other processes may share the store (and claim its jobs)."""
        ...

    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None:
        """Finish pending writes and disconnect."""

    async def create_job(self, job: NewJob) -> Job:
        """Store a new job in state ``queued``."""

    async def get_job(self, job_id: str) -> Job:
        """The job with its attempts; raises JobNotFound."""

    async def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Jobs matching every filter, newest first, one page at a time."""

    async def cancel_job(self, job_id: str, now: float) -> Job:
        """Cancel a job not yet running, or ask the worker of a running one to stop it.

        Raises JobNotFound, or IllegalTransition for a finished job.
        """

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        now: float,
        lease_seconds: float,
        labels: Mapping[str, str] | None = None,
    ) -> list[Claim]:
        """Claim up to ``limit`` queued jobs, oldest first, each as a new
        attempt; only jobs whose required labels are all in ``labels``."""

    async def mark_started(self, job_id: str, attempt: int, started: Started) -> None:
        """Record that the attempt's process started (fenced)."""

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        """Store output chunks of a running attempt (fenced)."""

    async def finish_attempt(self, job_id: str, attempt: int, outcome: Outcome) -> None:
        """Record how the attempt ended and give the job its final state (fenced)."""

    async def heartbeat(
        self,
        worker_id: str,
        running: Mapping[str, int],
        lease_until: float,
        now: float | None = None,
    ) -> HeartbeatReply:
        """Renew the leases of a worker's attempts and note it alive at ``now``.

        Answers which of ``running`` (job id -> attempt) the worker no longer
        holds, and which have been asked to stop.
        """

    async def release_attempt(self, job_id: str, attempt: int, message: str, now: float) -> None:
        """Give a running attempt back (its worker is shutting down): recorded
        as ``worker_lost``, and the job requeued (or failed, if its spec says
        ``on_worker_lost: fail``) without counting against ``max_lost``."""

    async def reap_expired(self, now: float, max_lost: int) -> list[LostAttempt]:
        """Resolve running attempts whose lease expired: ``worker_lost``,
        then requeued or failed as the job's spec says."""

    async def lost_processes(self, host: str, since: float) -> list[tuple[int, int | None]]:
        """The processes (pid, start ticks) of attempts on ``host`` recorded
        ``worker_lost`` since ``since``, which may still be running."""

    async def register_worker(self, info: WorkerInfo) -> None:
        """Record a worker that has started (replacing one of the same id)."""

    async def unregister_worker(self, worker_id: str, now: float) -> None:
        """Record that a worker has stopped."""

    async def list_workers(self, since: float, lost_before: float) -> list[WorkerRecord]:
        """Workers alive, or stopped or silent since ``since``, oldest first;
        those silent since before ``lost_before`` are ``lost``."""

    async def read_logs(
        self,
        job_id: str,
        *,
        attempt: int | None,
        stream: Stream | None,
        offset: int,
        limit: int = 8,
    ) -> LogRead:
        """Up to ``limit`` chunks past ``offset`` (in ``stream``, or in both
        merged when ``stream`` is None) of an attempt, the latest by default."""
