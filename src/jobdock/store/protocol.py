"""The Store protocol: everything the API and the workers ask of persistence.

``Store`` is the union of one small protocol per role (jobs, attempts,
logs, stdin, workers, access, schedules, workflows, metrics); a caller that needs
one role names it. Every write an attempt makes names its job and attempt
number (the fencing token) and raises :class:`jobdock.errors.FencedOff` when
a newer attempt owns the job. Each role's contract suite
(tests/contract/test_store_ROLE.py) runs against every implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from jobdock.events import Events
from jobdock.models import (
    ANONYMOUS,
    AuditPage,
    Job,
    JobPage,
    JobState,
    Schedule,
    ScheduleSpec,
    StoredToken,
    Stream,
    TokenInfo,
    WorkerRecord,
    Workflow,
    WorkflowPage,
    WorkflowState,
)
from jobdock.models.jobs import WebhookDelivery
from jobdock.models.machines import MachineRecord, MachineState, PoolState
from jobdock.models.outcome import Outcome
from jobdock.models.records import (
    Claim,
    FirePlan,
    HeartbeatReply,
    Limits,
    LogChunk,
    LogRead,
    LostAttempt,
    NewJob,
    NewWorkflow,
    Started,
    StdinRead,
    StoreMetrics,
    WorkerInfo,
)
from jobdock.models.workflow_moves import Planner


class Notifying(Protocol):
    """A store that tells its readers of changes: in-process events, raised
    also for changes other processes made (store/postgres.py)."""

    events: Events


class JobStore(Notifying, Protocol):
    """Jobs: created, read, listed and cancelled; the sweeps that fail those
    past their deadlines and delete those past their retention
    (store/jobs.py, store/housekeeping.py)."""

    async def create_job(self, job: NewJob) -> Job:
        """Store a new job in state ``queued`` (``scheduled`` if its run_at is
        ahead). With an idempotency key already taken, store nothing and
        return the job that has it (its id is not ``job.id``)."""

    async def create_jobs(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Store several new jobs, in order, in one transaction: all of
        them or (on an error) none. Each one with an idempotency key
        already taken is, as in :meth:`create_job`, the job that has it."""

    async def get_job(self, job_id: str) -> Job:
        """The job with its attempts; raises JobNotFound."""

    async def resolve_job(self, ref: str, owner: str | None = None) -> list[str]:
        """The ids of the jobs a reference may mean (its exact id; else the
        ids it begins, of 4 characters or more, and the jobs it names), among
        ``owner``'s jobs (everyone's for None), newest first, at most 11."""

    async def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
        name_contains: str | None = None,
    ) -> JobPage:
        """Jobs matching every filter (``owner``: only that user's;
        ``name_contains``: a name holding that text, in any case), newest
        first, one page at a time."""

    async def cancel_job(
        self, job_id: str, now: float, actor: str | None = None, kill: bool = False
    ) -> Job:
        """Cancel a job not yet running, or ask the worker of a running one to
        stop it (``kill``: with SIGKILL at once, not SIGTERM and its grace).

        Raises JobNotFound, or IllegalTransition for a finished job. The
        ``actor``, if given, is recorded in the audit log.
        """

    async def expire_deadlines(self, now: float) -> list[str]:
        """Fail (reason ``deadline``) the jobs not started by their queue
        deadline and the waiting ones past their total deadline; their ids."""

    async def prune(
        self, now: float, keep_default: float | None, older_than: float | None = None
    ) -> int:
        """Delete finished jobs with their attempts and logs: those finished
        more than ``older_than`` seconds ago if given, else those past their
        ``keep_for`` (or ``keep_default``). Returns how many."""

    async def delete_job(self, job_id: str) -> None:
        """Delete a finished job with its attempts and logs; raises
        JobNotFound, or IllegalTransition if it has not finished."""


class AttemptStore(Protocol):
    """Attempts: a worker claims jobs, records each attempt's start and end,
    renews its leases, and gives attempts back; the reaper resolves those
    whose lease expired (store/claims.py, store/attempts.py). Every write
    is fenced by the attempt number."""

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

    async def next_due(self) -> float | None:
        """The earliest time a scheduled or retrying job becomes due."""

    async def wanted_labels(
        self, keys: Sequence[str], labels: Mapping[str, str], now: float
    ) -> set[str]:
        """Which of the label ``keys`` some queued job requires that a worker
        offering ``labels`` could claim now (whose checks to run first)."""

    async def mark_started(self, job_id: str, attempt: int, started: Started) -> None:
        """Record that the attempt's process started (fenced)."""

    async def note_engine(
        self, job_id: str, attempt: int, engine_job: str, engine_state: str
    ) -> None:
        """Record the cluster engine's job of the attempt and what the engine
        says of it (fenced): a Slurm job id, 'PENDING (Resources)'."""

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

    async def interrupt_attempt(
        self, job_id: str, attempt: int, message: str, now: float
    ) -> JobState | None:
        """Hand a running attempt back because its machine is being reclaimed:
        recorded ``interrupted``, and the job queued again (or failed, if its
        spec says ``on_worker_lost: fail``) without counting against
        ``max_lost`` or its retries. Returns the job's new state, or None if
        that attempt no longer held its job."""

    async def reap_expired(self, now: float, max_lost: int) -> list[LostAttempt]:
        """Resolve running attempts whose lease expired: ``worker_lost``,
        then requeued or failed as the job's spec says."""

    async def lost_processes(self, host: str, since: float) -> list[tuple[int, int | None]]:
        """The processes (pid, start ticks) of attempts on ``host`` recorded
        ``worker_lost`` since ``since``, which may still be running."""


class LogStore(Notifying, Protocol):
    """Output of attempts: appended while they run (fenced), read back by
    attempt, stream and offset (store/logs.py)."""

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        """Store output chunks of a running attempt (fenced)."""

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
        merged when ``stream`` is None) of an attempt, the latest by default.
        Each has its arrival time (a chunk stored before migration 0010: its
        attempt's start time)."""

    async def read_logs_back(
        self, job_id: str, *, attempt: int, stream: Stream | None, before: int, limit: int = 8
    ) -> list[LogChunk]:
        """Up to ``limit`` chunks of an attempt that end at or before offset
        ``before`` (in ``stream``, or merged), the last first."""

    async def log_offset_at(
        self, job_id: str, *, attempt: int, stream: Stream | None, since: float
    ) -> int:
        """The offset (in ``stream``, or merged) where the output of an
        attempt that arrived at or after ``since`` begins."""


class StdinStore(Notifying, Protocol):
    """The streamed stdin of jobs submitted with ``stdin_stream``: appended
    as a client sends it, read back in order by each attempt, forgotten
    once the job has finished (store/stdin.py)."""

    async def append_stdin(self, job_id: str, data: bytes, limit: int) -> int:
        """Add ``data`` to the job's stdin (empty: only check that it may be
        added to); returns how many bytes it holds. Raises JobNotFound, StdinClosed (closed, or the job has finished) or
        StdinTooLarge (it would hold more than ``limit`` bytes)."""

    async def close_stdin(self, job_id: str) -> int:
        """Close the job's stdin: its attempts read end-of-file after what it
        holds (closing again changes nothing). Returns how many bytes it
        holds; raises JobNotFound, or StdinClosed if the job has finished."""

    async def read_stdin(self, job_id: str, after: int = 0, limit: int = 4) -> StdinRead:
        """Up to ``limit`` pieces of the job's stdin after piece ``after``,
        in the order they were appended."""

    async def delete_stdin(self, job_id: str) -> None:
        """Forget the job's stdin."""

    async def job_stdin(self, job_id: str) -> bytes:
        """The stdin given with the job's spec (not a streamed one; empty:
        none), kept with the job; raises JobNotFound."""


class WorkerStore(Protocol):
    """Workers, as they start, beat and stop, with what each runs
    (store/workers.py)."""

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


class AccessStore(Protocol):
    """Users' things: API tokens, secrets, job uids and the audit log
    (store/access.py, store/identities.py)."""

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

    async def record_audit(self, actor: str, action: str, targets: Sequence[str]) -> None:
        """Add one entry per target to the audit log, in one transaction (an
        agent's claims, ends and secret reads: api/agent.py)."""


class ScheduleStore(Protocol):
    """Cron schedules and their turns (docs/scheduling.md, store/schedules.py)."""

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


class WorkflowStore(Protocol):
    """Workflows and their steps (docs/workflows.md, store/workflows.py)."""

    async def create_workflow(self, workflow: NewWorkflow, plan: Planner) -> Workflow:
        """Store a new workflow (``running``) and start its first steps' jobs
        (the moves ``plan`` makes; see models.workflow_moves)."""

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


class WebhookStore(Protocol):
    """The webhooks jobs owe once they end, and the log of every try
    (store/webhooks.py, docs/operating.md)."""

    async def claim_webhooks(self, now: float, until: float, limit: int) -> list[str]:
        """Up to ``limit`` ended jobs whose webhooks are due, each claimed
        for this caller until ``until`` (then another may take it over)."""

    async def record_delivery(self, job_id: str, delivery: WebhookDelivery) -> None:
        """Add one try to the job's delivery log."""

    async def webhooks_sent(self, job_id: str) -> None:
        """The job owes no more webhooks."""

    async def list_deliveries(self, job_id: str) -> list[WebhookDelivery]:
        """The job's delivery log, oldest try first."""


class MetricsStore(Protocol):
    """What a metrics scrape reads (docs/metrics.md, store/metrics.py)."""

    async def metrics(self, label_keys: Sequence[str] = ()) -> StoreMetrics:
        """Counts of jobs (by state, reason, runtime and the values of the
        labels ``label_keys``) and attempts, and the histograms of queue
        wait and run duration, read in one snapshot (docs/metrics.md)."""


class MachineStore(Protocol):
    """Machine pools: the machines the autoscaler starts and stops, each
    pool's back-off and last decision, and the named leases by which one
    API server acts at a time (store/machines.py, docs/machines.md)."""

    async def add_machine(self, record: MachineRecord) -> None:
        """Record a new machine (in state ``requested``)."""

    async def update_machine(
        self,
        machine_id: str,
        changes: Mapping[str, object],
        to: MachineState | None = None,
    ) -> bool:
        """Change a machine's fields (store/machines.py MACHINE_FIELDS), and
        move it to ``to`` if given, in one conditional write: from a state
        that may move there (models.machines.MACHINE_MOVES), else from any
        live state. Whether it changed (False: it had moved on)."""

    async def list_machines(
        self, pool: str | None = None, *, since: float | None = None
    ) -> list[MachineRecord]:
        """Live machines (of ``pool``, if given) and those stopped or failed
        at or after ``since`` (none without it), newest first; a row that
        cannot be loaded is skipped (and logged once)."""

    async def pool_states(self) -> list[PoolState]:
        """Every pool's recorded state (back-off, last decision), by name."""

    async def record_pool(self, state: PoolState) -> None:
        """Create or replace a pool's state."""

    async def take_lease(self, name: str, holder: str, now: float, until: float) -> bool:
        """Take or renew lease ``name`` for ``holder`` until ``until``, if
        ``holder`` has it or it expired before ``now``; whether it has it."""

    async def release_lease(self, name: str, holder: str) -> None:
        """Give up lease ``name`` if ``holder`` has it."""

    async def waiting_requirements(self, now: float, limit: int) -> list[dict[str, str]]:
        """The labels required by the jobs waiting for a worker at ``now``
        (queued, or scheduled or retrying and due), of those that require
        any, in claim order, at most ``limit``."""

    async def machine_attempts(self, prefix: str) -> tuple[int, int, float | None]:
        """How many attempts the workers whose ids begin with ``prefix``
        claimed in all, how many of those run now, and when the last of
        them ended (None: none has)."""


class LogAppender(Notifying, Protocol):
    """What a LogWriter needs: appending an attempt's output (fenced)."""

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        """Store output chunks of a running attempt (fenced)."""


class StdinReader(Notifying, Protocol):
    """What an attempt's streamed stdin is read from (job_stdin.feed)."""

    async def read_stdin(self, job_id: str, after: int = 0, limit: int = 4) -> StdinRead:
        """As StdinStore.read_stdin."""


class SecretReader(Protocol):
    """What an attempt's secrets are read from (job_secrets.py)."""

    async def job_secrets(self, job_id: str, names: Sequence[str]) -> dict[str, bytes]:
        """As AccessStore.job_secrets."""


class UidSource(Protocol):
    """What gives each owner's process jobs their uid (identities.py)."""

    async def job_uid(self, owner: str, low: int, high: int) -> int:
        """As AccessStore.job_uid."""


class WorkflowAdvancer(Protocol):
    """What moves a workflow on when its step's job ends (housekeeping.py)."""

    async def advance_workflow(self, workflow_id: str, now: float, plan: Planner) -> bool:
        """As WorkflowStore.advance_workflow."""


class WorkerSide(LogAppender, StdinReader, SecretReader, UidSource, WorkflowAdvancer, Protocol):
    """Everything a Worker asks of its store: every Store has it, and so has
    an agent's store over HTTP (agent/remote_store.py), so that one Worker
    runs on either (docs/agents.md)."""

    @property
    def shared(self) -> bool:
        """Whether other processes may share the store (and claim its jobs)."""
        ...

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        now: float,
        lease_seconds: float,
        labels: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> list[Claim]:
        """As AttemptStore.claim_jobs."""

    async def next_due(self) -> float | None:
        """As AttemptStore.next_due."""

    async def wanted_labels(
        self, keys: Sequence[str], labels: Mapping[str, str], now: float
    ) -> set[str]:
        """As AttemptStore.wanted_labels."""

    async def mark_started(self, job_id: str, attempt: int, started: Started) -> None:
        """As AttemptStore.mark_started."""

    async def note_engine(
        self, job_id: str, attempt: int, engine_job: str, engine_state: str
    ) -> None:
        """As AttemptStore.note_engine."""

    async def finish_attempt(self, job_id: str, attempt: int, outcome: Outcome) -> None:
        """As AttemptStore.finish_attempt."""

    async def heartbeat(
        self,
        worker_id: str,
        running: Mapping[str, int],
        lease_until: float,
        now: float | None = None,
    ) -> HeartbeatReply:
        """As AttemptStore.heartbeat."""

    async def release_attempt(self, job_id: str, attempt: int, message: str, now: float) -> None:
        """As AttemptStore.release_attempt."""

    async def register_worker(self, info: WorkerInfo) -> None:
        """As WorkerStore.register_worker."""

    async def unregister_worker(self, worker_id: str, now: float) -> None:
        """As WorkerStore.unregister_worker."""


class Store(
    JobStore,
    AttemptStore,
    LogStore,
    StdinStore,
    WorkerStore,
    AccessStore,
    ScheduleStore,
    WorkflowStore,
    MetricsStore,
    WebhookStore,
    MachineStore,
    Protocol,
):
    """Persistence of jobs, attempts and logs: every role, and the store's
    lifecycle. A caller that needs only one role names that role."""

    @property
    def shared(self) -> bool:
        """Whether other processes may share the store (and claim its jobs)."""
        ...

    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None:
        """Finish pending writes and disconnect."""
