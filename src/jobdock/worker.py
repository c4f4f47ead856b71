"""The worker: claims jobs under a lease, runs each attempt through a runtime,
stores its output and records its outcome; renews its leases while they run
and, at shutdown, drains them or gives them back.

This is the one module that wires claim -> runtime -> logs -> result. Every
write an attempt makes carries its fencing token; when the store refuses one
(a newer attempt owns the job) the attempt is killed and records nothing.
Which runtime runs a job, and whether the container engine answers, is
``Engines``' (engines.py); a job's secrets are materialised by job_secrets.py;
expired leases, leftovers, deadlines and schedules are Housekeeping's.

Imports the engines, the label checks, housekeeping (to move a workflow on when its step
ends), the identities, logs, secrets, the store protocol, the runtimes' types
and the foundation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from jobdock import job_stdin, tracing
from jobdock.correlation import for_job
from jobdock.engines import ENGINE_PROBE_SECONDS, Engines
from jobdock.errors import EngineUnavailable, FencedOff, JobdockError, SpawnError, StoreError
from jobdock.housekeeping import workflow_step_ended
from jobdock.identities import Identities, run_as_refusal
from jobdock.job_secrets import materialised, secret_values
from jobdock.label_checks import LabelChecks
from jobdock.logs import LogWriter
from jobdock.models import CONTAINER_LABEL, JobState, Reason, Stream
from jobdock.models.outcome import ExitStatus, Outcome, outcome_of
from jobdock.models.records import Claim, Limits, Started, WorkerInfo
from jobdock.retry import retried
from jobdock.runtimes.base import AttemptInfo, AttemptLost, Execution, RunAs, Stdin
from jobdock.runtimes.identity import job_home
from jobdock.settings import Settings
from jobdock.store.protocol import WorkerSide
from jobdock.submit import Policy
from jobdock.vault import Redactor, Vault
from jobdock.workflow_plan import WorkflowPlanner
from jobdock.workflows import CALL_PROGRAM

if TYPE_CHECKING:
    from jobdock.tracing import Span

_log = logging.getLogger(__name__)

HOST = socket.gethostname()
#: Claim at most this many jobs in one statement.
CLAIM_BATCH = 64
#: After an empty claim on a store shared with other workers, wait this long.
SHARED_CLAIM_PAUSE = 0.005
#: The longest wait between two tries of a write the store refused.
MAX_RETRY_DELAY = 5.0


class _Attempt:
    """What the worker knows about one attempt it runs."""

    def __init__(self, claim: Claim, grace: float) -> None:
        self.claim = claim
        #: Between SIGTERM and SIGKILL: the job's kill_grace, within the
        #: server's max_kill_grace (a job stored before a lower maximum).
        self.grace = min(claim.spec.kill_grace, grace)
        self.execution: Execution | None = None
        self.stop_reason: Reason | None = None
        #: A kill was asked for (before the process started, it is killed once it has).
        self.kill_asked = False
        self.fenced = False
        self.released = False
        #: The trace context the job's process is given (TRACEPARENT).
        self.traceparent: str | None = claim.traceparent
        self._stopper: asyncio.Task[None] | None = None

    def stop(self, reason: Reason | None, *, kill: bool = False) -> None:
        """Stop the process: SIGTERM, the job's grace period, then SIGKILL
        (``kill``: SIGKILL at once, even while a stop waits out its grace)."""
        if self.stop_reason is None and not self.fenced:
            self.stop_reason = reason
        self.kill_asked = self.kill_asked or kill
        if self.execution is None:
            return
        if self.kill_asked:
            self.execution.kill()
        elif self._stopper is None:
            self._stopper = asyncio.ensure_future(self._stop(self.execution))

    async def _stop(self, execution: Execution) -> None:
        execution.terminate()
        try:
            async with asyncio.timeout(self.grace):
                await execution.wait()
        except TimeoutError:
            execution.kill()

    def fence(self) -> None:
        """The attempt lost its lease: kill it at once, record nothing more."""
        self.fenced = True
        if self.execution is not None:
            self.execution.kill()


class Worker:
    """Runs jobs from a store, up to ``settings.concurrency`` at once."""

    def __init__(
        self,
        store: WorkerSide,
        settings: Settings,
        engines: Engines,
        planner: WorkflowPlanner | None = None,
        worker_id: str | None = None,
        max_jobs: int = 0,
    ) -> None:
        self.store = store
        self.settings = settings
        self.engines = engines
        #: Moves a workflow on when its step's job ends (default: under the
        #: submit policy of this server's settings and engines).
        self.planner = planner or WorkflowPlanner(Policy(settings, engines.missing))
        self.id = worker_id or f"{HOST}-{secrets.token_hex(4)}"
        self.labels = {"arch": platform.machine(), "host": HOST, **settings.labels}
        if engines.containers is not None:
            self.labels[CONTAINER_LABEL] = "yes"
        self._running: dict[str, _Attempt] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._stopping = False
        #: Jobs to claim in all before claiming no more (0: no end).
        self._max_jobs = max_jobs
        self._claimed = 0
        #: Set once ``max_jobs`` jobs were claimed and all of them have ended.
        self.spent = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._unsubscribe = store.events.on_cancel(self._on_cancel)
        self._unsubscribe_kill = store.events.on_kill(self._on_kill)
        self._vault = Vault.of(settings)
        self._checks = LabelChecks(settings)
        self._identities = Identities(settings, store)
        self._limits = Limits(
            settings.max_running,
            dict(settings.concurrency_limits),
            settings.max_running_per_owner,
            frozenset(settings.shared_concurrency_keys),
        )

    @property
    def running(self) -> Mapping[str, int]:
        """The jobs this worker runs now, with their attempt numbers."""
        return {job_id: a.claim.attempt for job_id, a in self._running.items()}

    async def start(self) -> None:
        """Register, then begin claiming and renewing leases."""
        await self.store.register_worker(
            WorkerInfo(self.id, HOST, self.labels, self.settings.concurrency, time.time())
        )
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="jobdock-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="jobdock-heartbeat"),
        ]
        _log.info(
            "worker %s started (concurrency %d, labels %s)",
            self.id,
            self.settings.concurrency,
            ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())),
        )

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop claiming; let running jobs finish for ``drain_seconds``, then
        stop the rest and give them back to be run again. (The engines are
        their owner's to close, once the worker has stopped.)"""
        await self.stop_claiming()
        drain = self.settings.drain_seconds if drain_seconds is None else drain_seconds
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=drain)
            if pending:
                _log.info("releasing %d running job(s) for another worker", len(pending))
                for attempt in list(self._running.values()):
                    attempt.released = True
                    # A Slurm job is left running for the job's next attempt to adopt.
                    detach = getattr(attempt.execution, "detach", None)
                    if detach is not None:
                        detach()
                    else:
                        attempt.stop(None)
                await asyncio.wait(pending)
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.store.unregister_worker(self.id, time.time())
        except JobdockError as exc:
            _log.warning("could not record that worker %s stopped: %s", self.id, exc)

    async def stop_claiming(self) -> None:
        """Claim no more jobs (those claimed run on); the first step of ``stop``."""
        if self._stopping:
            return
        self._stopping = True
        self._unsubscribe()
        self._unsubscribe_kill()
        # Wake the claim loop so it sees _stopping; a claim in flight completes
        # and its jobs are drained like the others.
        self.store.events.work_available()
        self._slot_free.set()
        for task in self._loops[:1]:
            await task

    # -- claiming ---------------------------------------------------------------

    async def _claim_loop(self) -> None:
        settings = self.settings
        while not self._stopping:
            free = settings.concurrency - len(self._running)
            if self._max_jobs:
                if self._claimed >= self._max_jobs:
                    _log.info(
                        "worker %s claimed its %d job(s); claiming no more", self.id, self._claimed
                    )
                    self._note_spent()
                    return
                free = min(free, self._max_jobs - self._claimed)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            claimed_at = time.time()
            try:
                labels = self._claim_labels()
                if self._checks:
                    labels = await self._checks.offer(self.store, labels)
                claims = await self.store.claim_jobs(
                    self.id,
                    min(free, CLAIM_BATCH),
                    time.time(),
                    settings.lease_seconds,
                    labels,
                    self._limits,
                )
            except JobdockError as exc:
                _log.warning("cannot claim jobs: %s", exc)
                await asyncio.sleep(settings.poll_seconds)
                continue
            for claim in claims:
                tracing.record("claim", claim.traceparent, claimed_at, **_span_ids(claim))
                attempt = _Attempt(claim, settings.max_kill_grace)
                self._running[claim.job_id] = attempt
                self._claimed += 1
                task = asyncio.create_task(self._run(attempt))
                self._tasks.add(task)
                task.add_done_callback(self._attempt_done)
            if not claims:
                if self.store.shared:
                    # Every new job wakes every worker and one of them gets
                    # it: a worker that came away empty lets a few more jobs
                    # queue up before it tries again, instead of racing for
                    # each one.
                    await asyncio.sleep(SHARED_CLAIM_PAUSE)
                await self.store.events.wait_work(await self._until_due())

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._note_spent()

    def _note_spent(self) -> None:
        if self._max_jobs and self._claimed >= self._max_jobs and not self._tasks:
            self.spent.set()

    async def _until_due(self) -> float:
        """How long to wait for work: until the next scheduled or retrying
        job is due, at most the poll interval."""
        poll = self.settings.poll_seconds
        try:
            due = await self.store.next_due()
        except JobdockError:
            return poll
        if due is None:
            return poll
        return max(0.0, min(poll, due - time.time()))

    def offers(self) -> dict[str, str]:
        """The labels this worker claims jobs with now (no container label
        while its engine does not answer)."""
        return self._claim_labels()

    def _claim_labels(self) -> dict[str, str]:
        if self.engines.images_ok or CONTAINER_LABEL not in self.labels:
            return self.labels
        return {k: v for k, v in self.labels.items() if k != CONTAINER_LABEL}

    # -- one attempt ------------------------------------------------------------

    async def _run(self, attempt: _Attempt) -> None:
        claim = attempt.claim
        # Its log lines name the job and its trace; its spans join that trace.
        with (
            for_job(claim.job_id, claim.attempt, claim.trace_id),
            tracing.job_span("run", claim.traceparent, **_span_ids(claim)) as (span, parent),
        ):
            attempt.traceparent = parent
            await self._run_traced(attempt, span)

    async def _run_traced(self, attempt: _Attempt, span: Span | None) -> None:
        claim = attempt.claim
        try:
            await self._execute(attempt)
        except FencedOff:
            attempt.fence()
            _log.warning(
                "attempt %d of job %s lost its lease; stopped", claim.attempt, claim.job_id
            )
        except Exception as exc:
            _log.exception("attempt %d of job %s failed in jobdock", claim.attempt, claim.job_id)
            tracing.failed(span, f"{type(exc).__name__}: {exc}")
            if attempt.execution is not None:
                attempt.execution.kill()
            # The attempt ends here, whatever went wrong: left running, its
            # lease would be renewed by every heartbeat, for ever.
            await self._end_broken(claim, exc)
        finally:
            # Its job may run here again already (this attempt lost its lease
            # and the job was claimed anew): that attempt stays.
            if self._running.get(claim.job_id) is attempt:
                del self._running[claim.job_id]
            self._slot_free.set()

    def _env(self, attempt: _Attempt, run_as: RunAs | None) -> dict[str, str]:
        # Never the server's own environment (its secret_key may be there).
        claim = attempt.claim
        env = {"JOBDOCK_JOB_ID": claim.job_id, "JOBDOCK_ATTEMPT": str(claim.attempt)}
        if attempt.traceparent is not None:
            # The job's own spans join its trace (W3C trace context).
            env["TRACEPARENT"] = attempt.traceparent
        if claim.spec.image is None:
            # A container's PATH and HOME are its image's.
            env["PATH"] = self.settings.job_path
            env["HOME"] = job_home(claim.spec, run_as)
        env.update(claim.spec.env)
        return env

    async def _identity(self, claim: Claim) -> RunAs | None:
        """The identity a process job runs as (None: the server's own)."""
        if claim.spec.image is not None:
            return None
        refused = run_as_refusal(claim.spec, self.settings, claim.owner)
        if refused is not None:
            raise SpawnError(refused[1])
        return await self._identities.run_as(claim.owner)

    async def _execute(self, attempt: _Attempt) -> None:
        claim = attempt.claim
        try:
            run_as = await self._identity(claim)
            values = await secret_values(self.store, self._vault, claim)
        except SpawnError as exc:
            await self._fail_to_start(claim, exc)
            return
        with materialised(claim.spec.secrets, values, run_as) as (secret_env, redactor):
            env = {**self._env(attempt, run_as), **secret_env}
            await self._execute_with(attempt, env, redactor, run_as)

    async def _fail_to_start(self, claim: Claim, exc: SpawnError) -> None:
        failed = Outcome(
            state=JobState.FAILED,
            # A SpawnError's code is the reason it stands for (spawn_error,
            # image_not_found).
            reason=Reason(exc.code),
            message=exc.message,
            finished_at=time.time(),
        )
        failed = retried(failed, claim)
        with tracing.span("finish", **{"jobdock.state": failed.state.value}):
            await self._persist(
                lambda: self.store.finish_attempt(claim.job_id, claim.attempt, failed)
            )
        await workflow_step_ended(self.store, self.planner, claim, failed)

    async def _end_broken(self, claim: Claim, exc: Exception) -> None:
        """Fail an attempt that jobdock itself failed to carry through."""
        failed = Outcome(
            state=JobState.FAILED,
            reason=Reason.SPAWN_ERROR,
            message=f"jobdock failed to run the attempt: {type(exc).__name__}: {exc}",
            finished_at=time.time(),
        )
        try:
            await self.store.finish_attempt(claim.job_id, claim.attempt, failed)
        except JobdockError as error:
            # Fenced off (another attempt has the job) or the store is away:
            # then the lease, no longer renewed, ends the attempt.
            _log.warning("cannot record the end of job %s: %s", claim.job_id, error)

    async def _execute_with(
        self,
        attempt: _Attempt,
        env: dict[str, str],
        redactor: Redactor | None,
        run_as: RunAs | None = None,
    ) -> None:
        claim = attempt.claim
        spec = claim.spec
        if spec.command[:1] == [CALL_PROGRAM]:
            # A workflow's call step runs in this worker's own Python.
            command = [sys.executable, "-m", CALL_PROGRAM, *spec.command[1:]]
            spec = spec.model_copy(update={"command": command})
        info = AttemptInfo(claim.job_id, claim.attempt, claim.owner, run_as)
        try:
            runtime = self.engines.runtime_for(spec)
            execution = await runtime.start(spec, self._stdin(claim), env, info)
        except EngineUnavailable as exc:
            # Not the job's fault: it goes back to the queue, saying why, and
            # image jobs wait until the engine is back.
            await self.engines.down(exc)
            await self._give_back(claim, f"attempt {claim.attempt} given back: {exc.message}")
            return
        except SpawnError as exc:
            await self._fail_to_start(claim, exc)
            return
        except Exception as exc:
            # Whatever the runtime raised, the attempt did not start.
            _log.warning(
                "attempt %d of job %s cannot start", claim.attempt, claim.job_id, exc_info=exc
            )
            await self._fail_to_start(claim, SpawnError(f"cannot start the job: {exc}"))
            return
        attempt.execution = execution
        try:
            await self._until_running(claim, execution)
            await self._supervise(attempt, execution, redactor)
        finally:
            try:
                await execution.close()
            except JobdockError as exc:
                _log.warning(
                    "cannot clean up attempt %d of job %s: %s", claim.attempt, claim.job_id, exc
                )

    async def _until_running(self, claim: Claim, execution: Execution) -> None:
        """For a cluster engine's job (Slurm): wait until it runs, recording
        its id and why it waits on the attempt (a stop cancels it meanwhile)."""
        until_running = getattr(execution, "until_running", None)
        if until_running is None:
            return

        async def note(engine_job: str, state: str) -> None:
            await self._persist(
                lambda: self.store.note_engine(claim.job_id, claim.attempt, engine_job, state)
            )

        await until_running(note)

    def _stdin(self, claim: Claim) -> Stdin:
        """The attempt's stdin: the spec's, or its streamed input from the first byte."""
        if claim.spec.stdin_stream:
            return job_stdin.feed(self.store, claim.job_id, self.settings.poll_seconds)
        return claim.stdin

    async def _supervise(
        self, attempt: _Attempt, execution: Execution, redactor: Redactor | None
    ) -> None:
        """Store the output of a started attempt, and its outcome."""
        claim, store = attempt.claim, self.store
        inputs = execution.inputs
        started = Started(
            execution.pid,
            execution.pid_start,
            HOST,
            execution.started_at,
            None if inputs is None else inputs.model_dump(mode="json"),
        )
        writer = self._writer(attempt, redactor)
        pump = asyncio.ensure_future(writer.pump(execution.output()))
        try:
            if attempt.stop_reason is not None or attempt.released:
                attempt.stop(attempt.stop_reason, kill=attempt.kill_asked)
            await self._persist(lambda: store.mark_started(claim.job_id, claim.attempt, started))
            _log.debug("attempt started (pid %s)", execution.pid)
            exit_status = await self._wait(attempt, execution)
            await pump
        except EngineUnavailable as exc:
            # The engine went away under the container: the output it gave is
            # stored, and the job goes back to the queue (or fails, as its
            # on_worker_lost says) to wait for the engine.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(ENGINE_PROBE_SECONDS):
                    await pump
            await self.engines.down(exc)
            message = f"attempt {claim.attempt} given back: {exc.message} while it ran"
            await self._give_back(claim, message)
            return
        except AttemptLost as exc:
            # Its node failed or it was preempted: run again, as if its worker was lost.
            await pump
            await self._give_back(claim, f"attempt {claim.attempt} given back: {exc.message}")
            return
        except BaseException:
            pump.cancel()
            raise
        if attempt.fenced:
            raise FencedOff(claim.job_id, claim.attempt)
        if attempt.released:
            await self._give_back(claim, "the worker shut down")
            return
        outcome = retried(self._outcome(attempt, exit_status, writer), claim)
        with tracing.span("finish", **{"jobdock.state": outcome.state.value}):
            await self._persist(lambda: store.finish_attempt(claim.job_id, claim.attempt, outcome))
        _log.debug("attempt ended: %s", outcome.state.value)
        await workflow_step_ended(store, self.planner, claim, outcome)

    def _writer(self, attempt: _Attempt, redactor: Redactor | None) -> LogWriter:
        """The writer that stores the attempt's output, within its limit."""
        claim = attempt.claim
        spec = claim.spec
        return LogWriter(
            self.store,
            claim.job_id,
            claim.attempt,
            persist=self._persist,
            redactor=redactor,
            limit=spec.output_limit,
            on_limit=(lambda: attempt.stop(Reason.OUTPUT_LIMIT))
            if spec.on_output_limit == "stop"
            else None,
        )

    @staticmethod
    def _outcome(attempt: _Attempt, exit_status: ExitStatus, writer: LogWriter) -> Outcome:
        """The attempt's outcome, with what its output came to."""
        spec = attempt.claim.spec
        outcome = replace(
            outcome_of(exit_status, attempt.stop_reason, spec.timeout),
            stdout_bytes=writer.bytes[Stream.STDOUT],
            stderr_bytes=writer.bytes[Stream.STDERR],
        )
        if writer.dropped:
            outcome = replace(
                outcome,
                message=f"{outcome.message}; {writer.dropped} bytes of output past its limit "
                f"of {spec.output_limit} were dropped",
            )
        return outcome

    async def _give_back(self, claim: Claim, message: str) -> None:
        """Release the attempt: its job goes back to the queue, saying why."""
        await self._persist(
            lambda: self.store.release_attempt(claim.job_id, claim.attempt, message, time.time())
        )

    async def _persist(self, write: Callable[[], Awaitable[None]]) -> None:
        """Run one of an attempt's writes until the store takes it, so that a
        database that is briefly away loses no output and no result. A
        refused fence (FencedOff) is final. Once the worker is stopping, it
        gives up after its drain time."""
        delay, gave_up_at = 0.05, None
        while True:
            try:
                await write()
                return
            except StoreError as exc:
                if self._stopping:
                    gave_up_at = gave_up_at or time.monotonic() + self.settings.drain_seconds
                    if time.monotonic() > gave_up_at:
                        raise
                _log.warning("the store is unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _wait(self, attempt: _Attempt, execution: Execution) -> ExitStatus:
        timeout, why = attempt.claim.spec.timeout, Reason.TIMEOUT
        finish_by = attempt.claim.finish_by
        if finish_by is not None and (timeout is None or finish_by - time.time() < timeout):
            timeout, why = max(0.0, finish_by - time.time()), Reason.DEADLINE
        if timeout is None:
            return await execution.wait()
        try:
            async with asyncio.timeout(timeout):
                return await execution.wait()
        except TimeoutError:
            attempt.stop(why)
            return await execution.wait()

    # -- leases -----------------------------------------------------------------

    def _on_cancel(self, job_id: str, kill: bool = False) -> None:
        attempt = self._running.get(job_id)
        if attempt is not None:
            attempt.stop(Reason.CANCELLED, kill=kill)

    def _on_kill(self, job_id: str) -> None:
        self._on_cancel(job_id, kill=True)

    async def _heartbeat_loop(self) -> None:
        """Renew this worker's leases; kill the attempts that lost theirs and
        stop those cancelled meanwhile. (Expired leases are Housekeeping's.)"""
        settings = self.settings
        while True:
            await asyncio.sleep(settings.heartbeat_seconds)
            try:
                now = time.time()
                reply = await self.store.heartbeat(
                    self.id, self.running, now + settings.lease_seconds, now
                )
            except JobdockError as exc:
                _log.warning("cannot renew leases: %s", exc)
                continue
            for job_id in reply.lost:
                attempt = self._running.get(job_id)
                if attempt is not None:
                    attempt.fence()
            for job_id in reply.cancel:
                self._on_cancel(job_id, job_id in reply.kill)


def _span_ids(claim: Claim) -> dict[str, str | int]:
    """The attributes that name a claim's job in its spans."""
    return {"jobdock.job_id": claim.job_id, "jobdock.attempt": claim.attempt}
