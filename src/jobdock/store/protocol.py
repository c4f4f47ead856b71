"""The Store protocol: everything the API and the workers ask of persistence.

Every write an attempt makes names its job and attempt number (the fencing
token) and raises :class:`jobdock.errors.FencedOff` when a newer attempt owns
the job. One contract suite (tests/contract/test_store.py) runs against every
implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from jobdock.auth import AuditPage, StoredToken, TokenInfo
from jobdock.events import Events
from jobdock.models import (
    ANONYMOUS,
    Job,
    JobPage,
    JobSpec,
    JobState,
    Reason,
    Schedule,
    ScheduleSpec,
    Stream,
    WorkerRecord,
    WorkflowState,
)

if TYPE_CHECKING:
    from jobdock.store.workflow_moves import Planner
    from jobdock.workflows import Workflow, WorkflowPage


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job, ready to be stored."""

    id: str
    spec: JobSpec
    stdin: bytes
    created_at: float
    owner: str = ANONYMOUS


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker has claimed: it runs attempt ``attempt`` under a lease."""

    job_id: str
    attempt: int
    spec: JobSpec
    stdin: bytes
    owner: str = ANONYMOUS
    #: Failed attempts before this one that spent the retry budget.
    failures: int = 0
    #: The job's total deadline (epoch seconds), if it has one.
    finish_by: float | None = None


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
    #: With state ``retrying``: when the next attempt may start.
    next_attempt_at: float | None = None
    #: How the attempt was confined and what it used (see runtimes.base.Accounting).
    isolation: str | None = None
    limits: dict[str, Any] | None = None
    peak_memory: int | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Concurrency limits a claim respects (docs/scheduling.md): the most
    running jobs in the whole store, per concurrency key (a job's own
    ``concurrency_limit`` applies to a key not listed here; default 1), and
    per owner (None: unlimited).

    A key counts each owner's jobs apart (bob's jobs under ``deploy`` never
    hold back alice's), except the ``shared`` keys, which count everyone's
    together; ``per_key`` limits apply to each owner's count, or to the
    shared one."""

    max_running: int | None = None
    per_key: Mapping[str, int] = field(default_factory=dict)
    per_owner: int | None = None
    shared: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What one turn of a schedule does: move its next fire time from
    ``expected`` to ``next_fire_at`` (only if no other process did), and
    submit ``job`` for ``fire_at`` unless it is None (a missed, skipped fire).
    The schedule is ``owner``'s ``name``."""

    name: str
    expected: float
    next_fire_at: float | None
    fire_at: float | None
    job: NewJob | None
    owner: str = ANONYMOUS


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
    #: Of ``cancel``: those to kill at once, without their grace.
    kill: frozenset[str] = field(default_factory=frozenset)


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


@dataclass(frozen=True, slots=True)
class NewStep:
    """A step of a new workflow: its job and revert as checked at submit
    (job spec fields with the parameters in; outputs filled in at start)."""

    name: str
    needs: list[str]
    action: dict[str, Any]
    revert: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    """A validated workflow, ready to be stored."""

    id: str
    name: str
    params: dict[str, Any]
    concurrency: int
    steps: list[NewStep]
    created_at: float
    owner: str = ANONYMOUS


@dataclass(slots=True)
class Advanced:
    """What moving a workflow on did to jobs: the ids of those it made and
    of the running ones it asked to stop."""

    started: list[str] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)
    #: Another transaction held the workflow (it was not moved on here).
    held_elsewhere: bool = False
    rounds: int = 0


#: Upper bounds (seconds) of the queue-wait and run-duration histograms.
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)


@dataclass(frozen=True, slots=True)
class JobCount:
    """Jobs of one state, reason, runtime and label values: how many, and
    how many of them have started at least once."""

    state: str
    reason: str | None
    runtime: str
    labels: tuple[str, ...]
    jobs: int
    started: int


@dataclass(frozen=True, slots=True)
class Histogram:
    """Observations: how many were at most each of BUCKETS (cumulative),
    how many in all, and their sum."""

    buckets: tuple[int, ...]
    count: int
    sum: float


@dataclass(frozen=True, slots=True)
class StoreMetrics:
    """Everything the store tells a scrape."""

    #: Jobs in the store now.
    jobs: list[JobCount]
    #: Jobs deleted (retention, prune), from the tally: they count in the
    #: job counters, not in the gauge of jobs in the store.
    deleted: list[JobCount]
    #: Finished attempts by reason, deleted ones included (so are the
    #: retries and the histograms).
    attempts: dict[str, int]
    #: Attempts after a job's first: retries and runs after a lost worker.
    retries: int
    #: From submission to the first start, of jobs that started.
    queue_wait: Histogram
    #: From start to end of each finished attempt.
    run_duration: Histogram


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
        """Store a new job in state ``queued`` (``scheduled`` if its run_at is
        ahead). With an idempotency key already taken, store nothing and
        return the job that has it (its id is not ``job.id``)."""

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
        owner: str | None = None,
    ) -> JobPage:
        """Jobs matching every filter (``owner``: only that user's), newest
        first, one page at a time."""

    async def cancel_job(
        self, job_id: str, now: float, actor: str | None = None, kill: bool = False
    ) -> Job:
        """Cancel a job not yet running, or ask the worker of a running one to
        stop it (``kill``: with SIGKILL at once, not SIGTERM and its grace).

        Raises JobNotFound, or IllegalTransition for a finished job. The
        ``actor``, if given, is recorded in the audit log.
        """

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        now: float,
        lease_seconds: float,
        labels: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> list[Claim]:
        """Claim up to ``limit`` queued jobs, highest priority then oldest
        first, each as a new attempt; only jobs whose required labels are all
        in ``labels``, and only as many as the concurrency ``limits`` allow.
        Scheduled and retrying jobs due by ``now`` are queued first."""

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

    async def list_workers(
        self, since: float, lost_before: float, owner: str | None = None
    ) -> list[WorkerRecord]:
        """Workers alive, or stopped or silent since ``since``, oldest first;
        those silent since before ``lost_before`` are ``lost``. Each lists
        the ids of its running jobs (only ``owner``'s, if given) and counts
        them all (``busy``)."""

    async def metrics(self, label_keys: Sequence[str] = ()) -> StoreMetrics:
        """Counts of jobs (by state, reason, runtime and the values of the
        labels ``label_keys``) and attempts, and the histograms of queue
        wait and run duration, read in one snapshot (docs/metrics.md)."""

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

    # -- users: tokens, secrets, audit (store/access.py) --------------------------

    async def create_token(self, info: TokenInfo, token_hash: str, actor: str) -> None:
        """Store a new API token: its record and the hash of its secret."""

    async def find_token(self, token_id: str) -> StoredToken | None:
        """The token with this id, revoked and expired ones included."""

    async def list_tokens(self) -> list[TokenInfo]:
        """Every token, oldest first."""

    async def revoke_token(self, token_id: str, now: float, actor: str) -> None:
        """Revoke a token for good; raises TokenNotFound."""

    async def set_secret(self, owner: str, name: str, value: bytes, now: float) -> None:
        """Create or replace one of ``owner``'s secrets (``value`` is encrypted)."""

    async def delete_secret(self, owner: str, name: str, now: float) -> None:
        """Delete one of ``owner``'s secrets; raises SecretNotFound."""

    async def list_secrets(self, owner: str) -> list[tuple[str, float, float]]:
        """(name, created_at, updated_at) of ``owner``'s secrets, by name."""

    async def secret_names(self, owner: str, names: Sequence[str]) -> set[str]:
        """Those of ``names`` that ``owner`` has secrets for."""

    async def job_secrets(self, job_id: str, names: Sequence[str]) -> dict[str, bytes]:
        """The encrypted values of the named secrets of the job's owner."""

    async def job_uid(self, owner: str, low: int, high: int) -> int:
        """The uid ``owner``'s process jobs run as: allocated from
        ``low``..``high`` the first time (race-free among processes sharing
        the store), the same ever after; raises StoreError when the range
        is used up (store/identities.py)."""

    async def list_audit(self, *, limit: int = 50, cursor: str | None = None) -> AuditPage:
        """The audit log, newest first, one page at a time."""

    # -- scheduling (docs/scheduling.md) ------------------------------------------

    async def next_due(self) -> float | None:
        """The earliest time a scheduled or retrying job becomes due."""

    async def expire_deadlines(self, now: float) -> list[str]:
        """Fail (reason ``deadline``) the jobs not started by their queue
        deadline and the waiting ones past their total deadline; their ids."""

    async def prune(
        self, now: float, keep_default: float | None, older_than: float | None = None
    ) -> int:
        """Delete finished jobs with their attempts and logs: those finished
        more than ``older_than`` seconds ago if given, else those past their
        ``keep_for`` (or ``keep_default``). Returns how many."""

    async def create_schedule(
        self, spec: ScheduleSpec, now: float, next_fire_at: float | None, owner: str = ANONYMOUS
    ) -> Schedule:
        """Store a new schedule of ``owner`` (its jobs are theirs); raises
        ScheduleExists if ``owner`` has one of that name (names are per owner)."""

    async def get_schedule(self, name: str, *, owner: str = ANONYMOUS) -> Schedule:
        """``owner``'s schedule ``name``; raises ScheduleNotFound."""

    async def list_schedules(self, owner: str | None = None) -> list[Schedule]:
        """Every schedule (or only ``owner``'s), by name (then owner)."""

    async def delete_schedule(
        self, name: str, actor: str | None = None, *, owner: str = ANONYMOUS
    ) -> None:
        """Delete ``owner``'s schedule ``name`` (not its jobs); raises
        ScheduleNotFound. ``actor``, if given, is recorded in the audit log."""

    async def set_schedule_paused(
        self, name: str, paused: bool, next_fire_at: float | None, *, owner: str = ANONYMOUS
    ) -> Schedule:
        """Pause ``owner``'s schedule ``name``, or resume it with a new next
        fire time; raises ScheduleNotFound."""

    async def due_schedules(self, now: float) -> list[Schedule]:
        """Schedules not paused whose next fire time is at or before ``now``."""

    async def next_schedule_fire(self) -> float | None:
        """The earliest next fire time of the schedules not paused."""

    async def fire_schedule(self, plan: FirePlan, now: float) -> str | None:
        """Carry out a schedule's turn (see FirePlan) unless another process
        did; returns the id of the job submitted, if any."""

    # -- workflows (docs/workflows.md) ----------------------------------------------

    async def create_workflow(self, workflow: NewWorkflow, plan: Planner) -> Workflow:
        """Store a new workflow (``running``) and start its first steps' jobs
        (the moves ``plan`` makes; see store.workflow_moves)."""

    async def get_workflow(self, workflow_id: str) -> Workflow:
        """The workflow with its steps; raises WorkflowNotFound."""

    async def list_workflows(
        self,
        *,
        states: Sequence[WorkflowState] = (),
        owner: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WorkflowPage:
        """Workflows (``owner``: only that user's), newest first, one page at a time."""

    async def cancel_workflow(
        self, workflow_id: str, now: float, actor: str | None = None, *, plan: Planner
    ) -> Workflow:
        """Stop a running workflow: no new steps, running ones stopped, the
        completed ones reverted; it ends ``cancelled``. A workflow already
        stopping is left as it is; a finished one raises IllegalTransition."""

    async def advance_workflow(self, workflow_id: str, now: float, plan: Planner) -> bool:
        """Move a workflow on from what its steps' jobs have done, making the
        moves ``plan`` makes of its state, in one transaction (safe to
        run at any time, from any number of processes at once). False if
        another process was moving it on at the time (which may not have
        seen the latest job's end: try again)."""

    async def advance_workflows(self, now: float, plan: Planner) -> int:
        """Move on the workflows whose steps' jobs ended without it (their
        worker died first); returns how many."""
