"""The SQL store: runs the operations of the store's role modules on a database.

Its methods come in the order of the protocol's roles (store/protocol.py):
jobs (``store/jobs.py``, ``store/housekeeping.py``), attempts
(``store/claims.py``, ``store/attempts.py``), logs, workers, access
(``store/access.py``, ``store/identities.py``), schedules, workflows and
metrics. Each method runs one operation in a read or a write transaction
and raises the in-process events of what it changed; that is all it does,
so one class with a section per role reads better than a mixin per role.

Each operation is a plain function of a SQLAlchemy ``Connection``, so one
copy of the SQL serves SQLite (run on dedicated threads) and any other
database. Writes go through :class:`GroupCommitter`; every state change is a
single conditional ``UPDATE ... WHERE state IN (...) AND attempt = ?``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from jobdock.errors import StoreError
from jobdock.events import Events
from jobdock.models import (
    ANONYMOUS,
    Advanced,
    AuditPage,
    Claim,
    FirePlan,
    HeartbeatReply,
    Job,
    JobPage,
    JobState,
    Limits,
    LogChunk,
    LogRead,
    LostAttempt,
    NewJob,
    NewWorkflow,
    Outcome,
    Reason,
    Schedule,
    ScheduleSpec,
    Started,
    StdinRead,
    StoredToken,
    StoreMetrics,
    Stream,
    TokenInfo,
    WorkerInfo,
    WorkerRecord,
    Workflow,
    WorkflowPage,
    WorkflowState,
)
from jobdock.models.jobs import WebhookDelivery
from jobdock.models.machines import MachineRecord, MachineState, PoolState
from jobdock.models.workflow_moves import Planner
from jobdock.store import (
    access,
    attempts,
    claims,
    housekeeping,
    identities,
    jobs,
    logs,
    machines,
    metrics,
    postgres,
    sqlite,
    stdin,
    webhooks,
    workers,
)
from jobdock.store import schedules as schedule_ops
from jobdock.store import workflows as workflow_ops
from jobdock.store.group_commit import GroupCommitter
from jobdock.store.migrate import upgrade
from jobdock.store.shared_reads import SharedReads

T = TypeVar("T")
_log = logging.getLogger(__name__)
#: How long opening a PostgreSQL store waits for its notification listener.
LISTEN_TIMEOUT = 5.0


class SqlStore:
    """A Store on a SQL database through SQLAlchemy 2."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = postgres.normalize_url(url)
        self.events = Events()
        self._synchronous = sqlite_synchronous
        self._engine: Engine | None = None
        self._writer: GroupCommitter | None = None
        self._checkpointer: sqlite.Checkpointer | None = None
        self._listener: postgres.Listener | None = None
        self._readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jobdock-reader")
        self._log_reads: SharedReads[tuple[object, ...], LogRead] = SharedReads()

    @property
    def shared(self) -> bool:
        """PostgreSQL is made to be shared by many workers; SQLite is one machine's."""
        return self.url.startswith("postgresql")

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        if self.url.startswith("sqlite"):
            engine = sqlite.make_engine(self.url, self._synchronous)
        elif self.url.startswith("postgresql+psycopg"):
            engine = postgres.make_engine(self.url)
        else:
            raise StoreError(
                f"unsupported store URL {_safe_url(self.url)} "
                "(use sqlite:///PATH or postgresql://USER@HOST/DB)"
            )
        self._engine = engine
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._readers, upgrade, engine)
        except DBAPIError as exc:
            raise StoreError(f"cannot open the store at {_safe_url(self.url)}: {exc.orig}") from exc
        # SQLite tells no one of other processes' commits: the writer watches.
        sqlite_file = engine.dialect.name == "sqlite"
        self._writer = GroupCommitter(
            engine,
            watch=sqlite.CommitWatch() if sqlite_file else None,
            bell=sqlite.CommitBell.of(engine) if sqlite_file else None,
            on_foreign_commit=self.events.anything_changed,
        )
        await self._writer.start()
        if engine.dialect.name == "sqlite":
            self._checkpointer = sqlite.Checkpointer(engine)
            self._checkpointer.start()
        else:
            writer = self._writer
            self._listener = postgres.Listener(
                self.url, self.events, lambda: postgres.backend_pid(writer.connection)
            )
            self._listener.start()
            # The database answered just now, so this is quick; a store that
            # opened hears the others' writes (and its first wake-up is over).
            if not await self._listener.listening(LISTEN_TIMEOUT):
                _log.warning("not yet listening for PostgreSQL notifications; polling meanwhile")

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        if self._checkpointer is not None:
            await self._checkpointer.close()
        if self._listener is not None:
            await self._listener.close()
        self._readers.shutdown(wait=True)
        if self._engine is not None:
            self._engine.dispose()

    async def __aenter__(self) -> SqlStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- running SQL -----------------------------------------------------------

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        engine = self._engine
        if engine is None:
            raise StoreError("the store is not open")

        def run() -> T:
            # One transaction, so that a read of several tables sees one snapshot.
            with engine.connect() as conn, conn.begin():
                return fn(conn, *args)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except DBAPIError as exc:
            raise StoreError(f"the store failed: {exc.orig}") from exc

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise StoreError("the store is not open")
        return await self._writer.write(fn, *args)

    # -- jobs: created, read, listed, cancelled, expired, pruned ---------------

    async def create_job(self, job: NewJob) -> Job:
        spec = job.spec
        if self._writer is None:
            raise StoreError("the store is not open")
        if spec.idempotency_key is not None:
            existing = await self._writer.write(jobs.insert_job_once, job)
            if existing is not None:
                return existing
            self.events.work_available()
            return await self.get_job(job.id)
        inserted = self._writer.enqueue(jobs.insert_job, job)
        # Wake the local worker now, not after the commit: its claim then
        # joins the insert's transaction, and the job starts one commit sooner.
        self.events.work_available()
        await inserted
        return jobs.created_record(job)

    async def create_jobs(self, new: Sequence[NewJob]) -> list[Job]:
        if self._writer is None:
            raise StoreError("the store is not open")
        if not new:
            return []
        # One write: the group committer runs it in one transaction.
        existing = await self._writer.write(jobs.insert_jobs, list(new))
        self.events.work_available()
        return [
            jobs.created_record(job) if found is None else found
            for job, found in zip(new, existing, strict=True)
        ]

    async def get_job(self, job_id: str) -> Job:
        return await self._read(jobs.get_job, job_id)

    async def resolve_job(self, ref: str, owner: str | None = None) -> list[str]:
        return await self._read(jobs.resolve_job, ref, owner)

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
        return await self._read(
            jobs.list_jobs,
            tuple(states),
            dict(labels or {}),
            name,
            limit,
            cursor,
            owner,
            name_contains,
        )

    async def cancel_job(
        self, job_id: str, now: float, actor: str | None = None, kill: bool = False
    ) -> Job:
        running = await self._write(jobs.cancel_job, job_id, now, actor, kill)
        self.events.job_changed(job_id)
        if running:
            self.events.cancel_requested(job_id, kill)
        return await self.get_job(job_id)

    async def expire_deadlines(self, now: float) -> list[str]:
        failed = await self._write(housekeeping.expire_deadlines, now)
        for job_id in failed:
            self.events.job_changed(job_id)
        return failed

    async def prune(
        self, now: float, keep_default: float | None, older_than: float | None = None
    ) -> int:
        deleted = 0
        while True:
            batch = await self._write(housekeeping.prune, now, keep_default, older_than)
            deleted += batch
            if batch < housekeeping.PRUNE_BATCH:
                return deleted

    async def delete_job(self, job_id: str) -> None:
        await self._write(housekeeping.delete_job, job_id)

    # -- attempts: claimed, started, finished, kept alive, lost ----------------

    async def claim_jobs(
        self,
        worker_id: str,
        limit: int,
        now: float,
        lease_seconds: float,
        labels: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> list[Claim]:
        if limit <= 0:
            return []
        claimed = await self._write(
            claims.claim_jobs,
            worker_id,
            json.dumps(dict(labels or {})),
            limit,
            now,
            now + lease_seconds,
            limits,
        )
        for claim in claimed:
            self.events.job_changed(claim.job_id)
        return claimed

    async def mark_started(self, job_id: str, attempt: int, started: Started) -> None:
        await self._write(attempts.mark_started, job_id, attempt, started)
        self.events.job_changed(job_id)

    async def note_engine(
        self, job_id: str, attempt: int, engine_job: str, engine_state: str
    ) -> None:
        await self._write(attempts.note_engine, job_id, attempt, engine_job, engine_state)
        self.events.job_changed(job_id)

    async def finish_attempt(self, job_id: str, attempt: int, outcome: Outcome) -> None:
        def finish(conn: Connection) -> bool:
            waiting = attempts.finish_attempt(conn, job_id, attempt, outcome)
            if outcome.state.terminal:
                # No attempt will read the job's streamed stdin again.
                stdin.delete_stdin(conn, job_id)
            return waiting

        waiting = await self._write(finish)
        self.events.job_changed(job_id)
        if waiting:
            self.events.work_available()

    async def heartbeat(
        self,
        worker_id: str,
        running: Mapping[str, int],
        lease_until: float,
        now: float | None = None,
    ) -> HeartbeatReply:
        beat = time.time() if now is None else now
        return await self._write(attempts.heartbeat, worker_id, dict(running), lease_until, beat)

    async def release_attempt(self, job_id: str, attempt: int, message: str, now: float) -> None:
        state = await self._write(attempts.lose_attempt, job_id, attempt, message, now, None, False)
        self.events.job_changed(job_id)
        if state is not None:  # requeued, or ended: either way its slot is free
            self.events.work_available()

    async def interrupt_attempt(
        self, job_id: str, attempt: int, message: str, now: float
    ) -> JobState | None:
        state: JobState | None = await self._write(
            attempts.lose_attempt, job_id, attempt, message, now, None, False, Reason.INTERRUPTED
        )
        self.events.job_changed(job_id)
        if state is not None:
            self.events.work_available()
        return state

    async def reap_expired(self, now: float, max_lost: int) -> list[LostAttempt]:
        lost = await self._write(attempts.reap_expired, now, max_lost)
        for item in lost:
            self.events.job_changed(item.job_id)
        if lost:  # requeued or ended, the lost attempts' slots and keys are free
            self.events.work_available()
        return lost

    async def lost_processes(self, host: str, since: float) -> list[tuple[int, int | None]]:
        return await self._read(attempts.lost_processes, host, since)

    async def next_due(self) -> float | None:
        return await self._read(claims.next_due)

    async def wanted_labels(
        self, keys: Sequence[str], labels: Mapping[str, str], now: float
    ) -> set[str]:
        if not keys:
            return set()
        return await self._read(claims.wanted_labels, keys, json.dumps(dict(labels)), now)

    # -- logs ------------------------------------------------------------------

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        if chunks:
            await self._write(logs.append_logs, job_id, attempt, chunks)
            self.events.job_changed(job_id)

    async def read_logs(
        self,
        job_id: str,
        *,
        attempt: int | None,
        stream: Stream | None,
        offset: int,
        limit: int = 8,
    ) -> LogRead:
        # Shared: the followers of a live job all ask for the same page at once.
        return await self._log_reads.read(
            (job_id, attempt, stream, offset, limit),
            lambda: self._read(logs.read_logs, job_id, attempt, stream, offset, limit),
        )

    async def read_logs_back(
        self, job_id: str, *, attempt: int, stream: Stream | None, before: int, limit: int = 8
    ) -> list[LogChunk]:
        return await self._read(logs.read_logs_back, job_id, attempt, stream, before, limit)

    async def log_offset_at(
        self, job_id: str, *, attempt: int, stream: Stream | None, since: float
    ) -> int:
        return await self._read(logs.log_offset_at, job_id, attempt, stream, since)

    # -- streamed stdin --------------------------------------------------------

    async def append_stdin(self, job_id: str, data: bytes, limit: int) -> int:
        size = await self._write(stdin.append_stdin, job_id, data, limit)
        self.events.job_changed(job_id)
        return size

    async def close_stdin(self, job_id: str) -> int:
        size = await self._write(stdin.close_stdin, job_id)
        self.events.job_changed(job_id)
        return size

    async def read_stdin(self, job_id: str, after: int = 0, limit: int = 4) -> StdinRead:
        return await self._read(stdin.read_stdin, job_id, after, limit)

    async def delete_stdin(self, job_id: str) -> None:
        await self._write(stdin.delete_stdin, job_id)

    async def job_stdin(self, job_id: str) -> bytes:
        return await self._read(stdin.job_stdin, job_id)

    # -- workers ---------------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> None:
        await self._write(workers.register_worker, info)

    async def unregister_worker(self, worker_id: str, now: float) -> None:
        await self._write(workers.unregister_worker, worker_id, now)

    async def list_workers(
        self, since: float, lost_before: float, owner: str | None = None
    ) -> list[WorkerRecord]:
        return await self._read(workers.list_workers, since, lost_before, owner)

    # -- access: tokens, secrets, uids, audit ----------------------------------

    async def create_token(self, info: TokenInfo, token_hash: str, actor: str) -> None:
        def create(conn: Connection) -> None:
            access.create_token(conn, info, token_hash)
            access.record(conn, info.created_at.timestamp(), actor, "token.create", info.id)

        await self._write(create)

    async def find_token(self, token_id: str) -> StoredToken | None:
        return await self._read(access.find_token, token_id)

    async def list_tokens(self) -> list[TokenInfo]:
        return await self._read(access.list_tokens)

    async def revoke_token(self, token_id: str, now: float, actor: str) -> None:
        def revoke(conn: Connection) -> None:
            access.revoke_token(conn, token_id, now)
            access.record(conn, now, actor, "token.revoke", token_id)

        await self._write(revoke)

    async def set_secret(self, owner: str, name: str, value: bytes, now: float) -> None:
        await self._write(access.set_secret, owner, name, value, now)

    async def delete_secret(self, owner: str, name: str, now: float) -> None:
        await self._write(access.delete_secret, owner, name, now)

    async def list_secrets(self, owner: str) -> list[tuple[str, float, float]]:
        return await self._read(access.list_secrets, owner)

    async def secret_names(self, owner: str, names: Sequence[str]) -> set[str]:
        return await self._read(access.secret_names, owner, list(names))

    async def job_secrets(self, job_id: str, names: Sequence[str]) -> dict[str, bytes]:
        return await self._read(access.job_secrets, job_id, list(names))

    async def job_uid(self, owner: str, low: int, high: int) -> int:
        return await self._write(identities.job_uid, owner, low, high)

    async def list_audit(self, *, limit: int = 50, cursor: str | None = None) -> AuditPage:
        return await self._read(access.list_audit, limit, cursor)

    async def record_audit(self, actor: str, action: str, targets: Sequence[str]) -> None:
        if not targets:
            return
        now = time.time()

        def add(conn: Connection) -> None:
            for target in targets:
                access.record(conn, now, actor, action, target)

        await self._write(add)

    # -- schedules -------------------------------------------------------------

    async def create_schedule(
        self, spec: ScheduleSpec, now: float, next_fire_at: float | None, owner: str = ANONYMOUS
    ) -> Schedule:
        def create(conn: Connection) -> Schedule:
            schedule = schedule_ops.insert_schedule(conn, spec, now, next_fire_at, owner)
            access.record(conn, now, owner, "schedule.add", spec.name)
            return schedule

        schedule = await self._write(create)
        self.events.schedules_changed()
        return schedule

    async def get_schedule(self, name: str, *, owner: str = ANONYMOUS) -> Schedule:
        return await self._read(schedule_ops.get_schedule, name, owner)

    async def list_schedules(self, owner: str | None = None) -> list[Schedule]:
        return await self._read(schedule_ops.list_schedules, owner)

    async def delete_schedule(
        self, name: str, actor: str | None = None, *, owner: str = ANONYMOUS
    ) -> None:
        def delete(conn: Connection) -> None:
            schedule_ops.delete_schedule(conn, name, owner)
            if actor is not None:
                access.record(conn, time.time(), actor, "schedule.rm", name)

        await self._write(delete)

    async def set_schedule_paused(
        self, name: str, paused: bool, next_fire_at: float | None, *, owner: str = ANONYMOUS
    ) -> Schedule:
        schedule = await self._write(schedule_ops.set_paused, name, owner, paused, next_fire_at)
        if not paused:
            self.events.schedules_changed()
        return schedule

    async def due_schedules(self, now: float) -> list[Schedule]:
        due, unloadable = await self._read(schedule_ops.due_schedules, now)
        if unloadable:
            await self._write(schedule_ops.pause_unloadable, unloadable)
        return due

    async def next_schedule_fire(self) -> float | None:
        return await self._read(schedule_ops.next_fire)

    async def fire_schedule(self, plan: FirePlan, now: float) -> str | None:
        job_id, stopped = await self._write(schedule_ops.fire, plan, now)
        if stopped is not None:
            self.events.job_changed(stopped)
            self.events.cancel_requested(stopped)
        if job_id is not None:
            self.events.job_changed(job_id)
            self.events.work_available()
        return job_id

    # -- workflows -------------------------------------------------------------

    def _advanced(self, advanced: Advanced) -> None:
        """Raise the events of what moving workflows on did to jobs."""
        for job_id in advanced.started:
            self.events.job_changed(job_id)
        for job_id in advanced.stopping:
            self.events.job_changed(job_id)
            self.events.cancel_requested(job_id)
        if advanced.started:
            self.events.work_available()

    async def create_workflow(self, workflow: NewWorkflow, plan: Planner) -> Workflow:
        self._advanced(await self._write(workflow_ops.insert_workflow, workflow, plan))
        return await self.get_workflow(workflow.id)

    async def get_workflow(self, workflow_id: str) -> Workflow:
        return await self._read(workflow_ops.get_workflow, workflow_id)

    async def list_workflows(
        self,
        *,
        states: Sequence[WorkflowState] = (),
        owner: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WorkflowPage:
        return await self._read(workflow_ops.list_workflows, tuple(states), owner, limit, cursor)

    async def cancel_workflow(
        self, workflow_id: str, now: float, actor: str | None = None, *, plan: Planner
    ) -> Workflow:
        advanced = await self._write(workflow_ops.cancel_workflow, workflow_id, now, actor, plan)
        self._advanced(advanced)
        return await self.get_workflow(workflow_id)

    async def advance_workflow(self, workflow_id: str, now: float, plan: Planner) -> bool:
        advanced = await self._write(workflow_ops.advance, workflow_id, now, plan)
        self._advanced(advanced)
        return not advanced.held_elsewhere

    async def advance_workflows(self, now: float, plan: Planner) -> int:
        count, advanced = await self._write(workflow_ops.advance_all, now, plan)
        self._advanced(advanced)
        return int(count)

    # -- webhooks --------------------------------------------------------------

    async def claim_webhooks(self, now: float, until: float, limit: int) -> list[str]:
        return await self._write(webhooks.claim_webhooks, now, until, limit)

    async def record_delivery(self, job_id: str, delivery: WebhookDelivery) -> None:
        await self._write(webhooks.record_delivery, job_id, delivery)

    async def webhooks_sent(self, job_id: str) -> None:
        await self._write(webhooks.webhooks_sent, job_id)

    async def list_deliveries(self, job_id: str) -> list[WebhookDelivery]:
        return await self._read(webhooks.list_deliveries, job_id)

    # -- metrics ---------------------------------------------------------------

    async def metrics(self, label_keys: Sequence[str] = ()) -> StoreMetrics:
        return await self._read(metrics.store_metrics, list(label_keys))

    # -- machine pools ---------------------------------------------------------

    async def add_machine(self, record: MachineRecord) -> None:
        await self._write(machines.add_machine, record)

    async def update_machine(
        self,
        machine_id: str,
        changes: Mapping[str, object],
        to: MachineState | None = None,
    ) -> bool:
        return await self._write(machines.update_machine, machine_id, dict(changes), to)

    async def list_machines(
        self, pool: str | None = None, *, since: float | None = None
    ) -> list[MachineRecord]:
        return await self._read(machines.list_machines, pool, since)

    async def pool_states(self) -> list[PoolState]:
        return await self._read(machines.pool_states)

    async def record_pool(self, state: PoolState) -> None:
        await self._write(machines.record_pool, state)

    async def take_lease(self, name: str, holder: str, now: float, until: float) -> bool:
        return await self._write(machines.take_lease, name, holder, now, until)

    async def release_lease(self, name: str, holder: str) -> None:
        await self._write(machines.release_lease, name, holder)

    async def waiting_requirements(self, now: float, limit: int) -> list[dict[str, str]]:
        return await self._read(machines.waiting_requirements, now, limit)

    async def machine_attempts(self, prefix: str) -> tuple[int, int, float | None]:
        return await self._read(machines.machine_attempts, prefix)


def _safe_url(url: str) -> str:
    """The URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
