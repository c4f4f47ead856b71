"""The worker: claims jobs under a lease, runs each attempt through a runtime,
stores its output and records its outcome.

This is the one module that wires claim -> runtime -> logs -> result. Every
write an attempt makes carries its fencing token; when the store refuses one
(a newer attempt owns the job) the attempt is killed and records nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import platform
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from jobdock.errors import (
    EngineUnavailable,
    FencedOff,
    JobdockError,
    SecretsUnavailable,
    SpawnError,
    StoreError,
)
from jobdock.identities import Identities, run_as_refusal
from jobdock.logs import LogWriter
from jobdock.models import CONTAINER_LABEL, JobSpec, JobState, Reason, Stream
from jobdock.runtimes.base import AttemptInfo, Execution, ExitStatus, RunAs, Runtime
from jobdock.runtimes.container import ContainerRuntime
from jobdock.runtimes.isolation import Confinement, default_parent
from jobdock.runtimes.process import ProcessRuntime, kill_process_group
from jobdock.schedules import Scheduler
from jobdock.settings import Settings
from jobdock.store.protocol import Claim, Limits, Outcome, Started, Store, WorkerInfo
from jobdock.submit import Policy
from jobdock.vault import SECRETS_DIR_ENV, Redactor, Vault, secret_env, secret_files
from jobdock.workflow_plan import WorkflowPlanner
from jobdock.workflows import CALL_PROGRAM, WORKFLOW_LABEL

# isort: split
# re-exported for the issue-16 merge
from jobdock.models.outcome import describe_exit as describe_exit
from jobdock.models.outcome import outcome_of as outcome_of
from jobdock.retry import retried as retried

_log = logging.getLogger(__name__)

HOST = socket.gethostname()
#: Claim at most this many jobs in one statement.
CLAIM_BATCH = 64
#: After an empty claim on a store shared with other workers, wait this long.
SHARED_CLAIM_PAUSE = 0.005
#: The longest wait between two tries of a write the store refused.
MAX_RETRY_DELAY = 5.0
#: At start, processes of attempts lost this recently on this machine are ended.
ORPHAN_SECONDS = 7 * 86400.0
#: Waits before asking again to move a workflow on that another process held.
ADVANCE_RETRIES = (0.05, 0.2, 1.0)
#: While the container engine does not answer, ask it again this often.
ENGINE_PROBE_SECONDS = 2.0


def confinement_of(settings: Settings) -> Confinement:
    """What this host offers to confine process jobs, with the server's policy."""
    return Confinement.detect(
        cgroups_mode=settings.cgroups,
        parent=settings.cgroup_parent or default_parent(settings.home),
        unconfined=settings.unisolated,
        isolate_by_default=settings.isolate_by_default,
        allow_host_network=settings.allow_host_network,
        every_job=settings.cgroup_every_job,
    )


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
            await asyncio.wait_for(execution.wait(), self.grace)
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
        store: Store,
        settings: Settings,
        runtime: Runtime | None = None,
        worker_id: str | None = None,
        containers: ContainerRuntime | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.runtime: Runtime = runtime or ProcessRuntime(confinement_of(settings))
        self.containers = containers or (
            ContainerRuntime(settings) if settings.containers else None
        )
        self.id = worker_id or f"{HOST}-{secrets.token_hex(4)}"
        self.labels = {"arch": platform.machine(), "host": HOST, **settings.labels}
        if self.containers is not None:
            self.labels[CONTAINER_LABEL] = "yes"
        # Image jobs are claimed only while the engine answers.
        self._engine_ok = False
        self._engine_probe: asyncio.Task[None] | None = None
        self._running: dict[str, _Attempt] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self._unsubscribe = store.events.on_cancel(self._on_cancel)
        self._unsubscribe_kill = store.events.on_kill(self._on_kill)
        self._vault = Vault.of(settings)
        self._identities = Identities(settings, store)
        # The reaper waits until this (monotonic) time; see _heartbeat_loop.
        self._reap_after = 0.0
        self._limits = Limits(
            settings.max_running,
            dict(settings.concurrency_limits),
            settings.max_running_per_owner,
            frozenset(settings.shared_concurrency_keys),
        )
        self._pruned_at = 0.0
        # The jobs of schedules and workflow steps are made under the policy
        # of a submit to this server.
        self._planner = WorkflowPlanner(Policy(settings, self.missing))

    @property
    def running(self) -> Mapping[str, int]:
        """The jobs this worker runs now, with their attempt numbers."""
        return {job_id: a.claim.attempt for job_id, a in self._running.items()}

    def missing(self, spec: JobSpec) -> str | None:
        """What of ``spec`` this worker's runtime cannot enforce, or None. An
        image job's limits and isolation are the engine's, never missing here."""
        if spec.image is None and isinstance(self.runtime, ProcessRuntime):
            return self.runtime.confinement.missing(spec)
        return None

    async def _confine(self) -> None:
        """Say how jobs will be confined; remove this server's leftover groups."""
        if not isinstance(self.runtime, ProcessRuntime):
            return
        confinement = self.runtime.confinement
        _log.info("process jobs: %s", confinement.describe())
        if confinement.hierarchy is None or confinement.bwrap is None:
            what = "run without them (isolation: none)"
            if confinement.unconfined == "refuse":
                what = "be refused"
            _log.warning(
                "this server cannot fully isolate jobs; jobs that ask for limits or "
                "isolation it cannot enforce will %s",
                what,
            )
        removed = await asyncio.get_running_loop().run_in_executor(
            None, confinement.remove_leftovers
        )
        if removed:
            _log.warning("removed %d cgroup(s) left by an earlier run", removed)

    async def start(self) -> None:
        """Register, resolve attempts lost before this start, then begin claiming."""
        await self._confine()
        await self.store.register_worker(
            WorkerInfo(self.id, HOST, self.labels, self.settings.concurrency, time.time())
        )
        await self._reap()
        await self._end_orphans()
        if self.containers is not None:
            await self._engine_down(None)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="jobdock-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="jobdock-heartbeat"),
            asyncio.create_task(
                Scheduler(self.store, self._planner.policy).run(), name="jobdock-cron"
            ),
        ]
        _log.info(
            "worker %s started (concurrency %d, labels %s)",
            self.id,
            self.settings.concurrency,
            ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())),
        )

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop claiming; let running jobs finish for ``drain_seconds``, then
        stop the rest and give them back to be run again."""
        self._stopping = True
        self._unsubscribe()
        self._unsubscribe_kill()
        # Wake the claim loop so it sees _stopping; a claim in flight completes
        # and its jobs are drained like the others.
        self.store.events.work_available()
        self._slot_free.set()
        for task in self._loops[:1]:
            await task
        drain = self.settings.drain_seconds if drain_seconds is None else drain_seconds
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=drain)
            if pending:
                _log.info("releasing %d running job(s) for another worker", len(pending))
                for attempt in list(self._running.values()):
                    attempt.released = True
                    attempt.stop(None)
                await asyncio.wait(pending)
        loops = [*self._loops, *([self._engine_probe] if self._engine_probe else [])]
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.runtime.close()
        if self.containers is not None:
            await self.containers.aclose()
        try:
            await self.store.unregister_worker(self.id, time.time())
        except JobdockError as exc:
            _log.warning("could not record that worker %s stopped: %s", self.id, exc)

    # -- claiming ---------------------------------------------------------------

    async def _claim_loop(self) -> None:
        settings = self.settings
        while not self._stopping:
            free = settings.concurrency - len(self._running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                claims = await self.store.claim_jobs(
                    self.id,
                    min(free, CLAIM_BATCH),
                    time.time(),
                    settings.lease_seconds,
                    self._claim_labels(),
                    self._limits,
                )
            except JobdockError as exc:
                _log.warning("cannot claim jobs: %s", exc)
                await asyncio.sleep(settings.poll_seconds)
                continue
            for claim in claims:
                attempt = _Attempt(claim, settings.max_kill_grace)
                self._running[claim.job_id] = attempt
                task = asyncio.create_task(self._run(attempt))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not claims:
                if self.store.shared:
                    # Every new job wakes every worker and one of them gets
                    # it: a worker that came away empty lets a few more jobs
                    # queue up before it tries again, instead of racing for
                    # each one.
                    await asyncio.sleep(SHARED_CLAIM_PAUSE)
                await self.store.events.wait_work(await self._until_due())

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

    def _claim_labels(self) -> dict[str, str]:
        if self._engine_ok or CONTAINER_LABEL not in self.labels:
            return self.labels
        return {k: v for k, v in self.labels.items() if k != CONTAINER_LABEL}

    # -- the container engine ---------------------------------------------------

    async def _engine_down(self, error: EngineUnavailable | None) -> None:
        """Stop claiming image jobs and ask the engine until it answers again
        (with ``error`` None, ask once first: at start)."""
        if error is None:
            if await self._engine_answers():
                return
        elif self._engine_ok:
            self._engine_ok = False
            _log.warning("%s; image jobs wait until it is back", error.message)
        if self._engine_probe is None or self._engine_probe.done():
            self._engine_probe = asyncio.create_task(self._probe_engine())

    async def _engine_answers(self) -> bool:
        assert self.containers is not None
        try:
            await self.containers.engine.ping()
        except JobdockError as exc:
            if self._engine_ok or self._engine_probe is None:
                _log.warning("%s; image jobs wait until it is back", exc.message)
            self._engine_ok = False
            return False
        if not self._engine_ok:
            apart, said = await self.containers.user_namespaces()
            level = logging.WARNING if self.settings.auth_enabled and not apart else logging.INFO
            _log.log(level, "container engine at %s answers; %s", self.settings.docker_host, said)
        self._engine_ok = True
        await self._sweep_containers()
        self.store.events.work_available()
        return True

    async def _probe_engine(self) -> None:
        while not await self._engine_answers():  # noqa: ASYNC110 (polls the engine)
            await asyncio.sleep(ENGINE_PROBE_SECONDS)

    async def _sweep_containers(self) -> None:
        """Remove containers whose attempts are over (left by a lost worker)."""
        if self.containers is None or not self._engine_ok:
            return

        async def live(job_id: str, attempt: int) -> bool:
            try:
                job = await self.store.get_job(job_id)
            except JobdockError:
                return job_id in self._running
            return job.state is JobState.RUNNING and job.attempt == attempt

        try:
            await self.containers.sweep(live)
        except JobdockError as exc:
            _log.warning("cannot look for containers left by lost workers: %s", exc)

    # -- one attempt ------------------------------------------------------------

    async def _run(self, attempt: _Attempt) -> None:
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
            if attempt.execution is not None:
                attempt.execution.kill()
            # The attempt ends here, whatever went wrong: left running, its
            # lease would be renewed by every heartbeat, for ever.
            await self._end_broken(claim, exc)
        finally:
            del self._running[claim.job_id]
            self._slot_free.set()

    def _env(self, claim: Claim, run_as: RunAs | None) -> dict[str, str]:
        # Never the server's own environment (its secret_key may be there).
        env = {"JOBDOCK_JOB_ID": claim.job_id, "JOBDOCK_ATTEMPT": str(claim.attempt)}
        if claim.spec.image is None:
            # A container's PATH is its image's.
            env["PATH"] = self.settings.job_path
        if run_as is not None:
            env["HOME"] = run_as.home
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

    def _runtime_for(self, spec: JobSpec) -> Runtime:
        if spec.image is None:
            return self.runtime
        if self.containers is None:
            raise SpawnError("this worker does not run image jobs")
        return self.containers

    async def _execute(self, attempt: _Attempt) -> None:
        claim = attempt.claim
        refs = claim.spec.secrets
        try:
            run_as = await self._identity(claim)
            values = await self._secret_values(claim) if refs else {}
        except SpawnError as exc:
            await self._fail_to_start(claim, exc)
            return
        if not refs:
            await self._execute_with(attempt, self._env(claim, run_as), None, run_as)
            return
        # The files exist for this attempt only, its identity's alone; the
        # values are masked in its output.
        owner = (run_as.uid, run_as.gid) if run_as is not None else None
        with secret_files(refs, values, owner) as directory:
            env = {**self._env(claim, run_as), **secret_env(refs, values)}
            if directory is not None:
                env[SECRETS_DIR_ENV] = str(directory)
            await self._execute_with(attempt, env, Redactor(values.values()), run_as)

    async def _secret_values(self, claim: Claim) -> dict[str, bytes]:
        """The values of the secrets the job references, of its owner's."""
        names = [ref.name for ref in claim.spec.secrets]
        stored = await self.store.job_secrets(claim.job_id, names)
        missing = [name for name in names if name not in stored]
        if missing:
            raise SpawnError(f"the job's secret {missing[0]!r} no longer exists")
        try:
            return {name: self._vault.decrypt(value) for name, value in stored.items()}
        except SecretsUnavailable as exc:
            raise SpawnError(exc.message) from None

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
        await self._persist(lambda: self.store.finish_attempt(claim.job_id, claim.attempt, failed))
        await self._finished(claim, failed)

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

    async def _finished(self, claim: Claim, outcome: Outcome) -> None:
        """After a job's end: move on the workflow whose step it ran, if any.
        (A failure here is made good by the next heartbeat's sweep.)"""
        workflow_id = claim.spec.labels.get(WORKFLOW_LABEL)
        if workflow_id is None or outcome.state is JobState.RETRYING:
            return
        for delay in ADVANCE_RETRIES:
            try:
                if await self.store.advance_workflow(workflow_id, time.time(), self._planner):
                    return
            except JobdockError as exc:
                _log.warning("cannot move workflow %s on: %s", workflow_id, exc)
                return
            # Another process held it, maybe since before this job ended.
            await asyncio.sleep(delay)

    async def _execute_with(
        self,
        attempt: _Attempt,
        env: dict[str, str],
        redactor: Redactor | None,
        run_as: RunAs | None = None,
    ) -> None:
        claim, store = attempt.claim, self.store
        spec = claim.spec
        if spec.command[:1] == [CALL_PROGRAM]:
            # A workflow's call step runs in this worker's own Python.
            command = [sys.executable, "-m", CALL_PROGRAM, *spec.command[1:]]
            spec = spec.model_copy(update={"command": command})
        info = AttemptInfo(claim.job_id, claim.attempt, claim.owner, run_as)
        try:
            runtime = self._runtime_for(spec)
            execution = await runtime.start(spec, claim.stdin, env, info)
        except EngineUnavailable as exc:
            # Not the job's fault: it goes back to the queue, saying why, and
            # image jobs wait until the engine is back.
            await self._engine_down(exc)
            message = f"attempt {claim.attempt} given back: {exc.message}"
            await self._persist(
                lambda: store.release_attempt(claim.job_id, claim.attempt, message, time.time())
            )
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
            await self._supervise(attempt, execution, redactor)
        finally:
            try:
                await execution.close()
            except JobdockError as exc:
                _log.warning(
                    "cannot clean up attempt %d of job %s: %s", claim.attempt, claim.job_id, exc
                )

    async def _supervise(
        self, attempt: _Attempt, execution: Execution, redactor: Redactor | None
    ) -> None:
        """Store the output of a started attempt, and its outcome."""
        claim, store = attempt.claim, self.store
        spec = claim.spec
        started = Started(execution.pid, execution.pid_start, HOST, execution.started_at)
        writer = LogWriter(
            store,
            claim.job_id,
            claim.attempt,
            persist=self._persist,
            redactor=redactor,
            limit=spec.output_limit,
            on_limit=(lambda: attempt.stop(Reason.OUTPUT_LIMIT))
            if spec.on_output_limit == "stop"
            else None,
        )
        pump = asyncio.ensure_future(writer.pump(execution.output()))
        try:
            if attempt.stop_reason is not None or attempt.released:
                attempt.stop(attempt.stop_reason, kill=attempt.kill_asked)
            await self._persist(lambda: store.mark_started(claim.job_id, claim.attempt, started))
            exit_status = await self._wait(attempt, execution)
            await pump
        except EngineUnavailable as exc:
            # The engine went away under the container: the output it gave is
            # stored, and the job goes back to the queue (or fails, as its
            # on_worker_lost says) to wait for the engine.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pump, ENGINE_PROBE_SECONDS)
            await self._engine_down(exc)
            message = f"attempt {claim.attempt} given back: {exc.message} while it ran"
            await self._persist(
                lambda: store.release_attempt(claim.job_id, claim.attempt, message, time.time())
            )
            return
        except BaseException:
            pump.cancel()
            raise
        if attempt.fenced:
            raise FencedOff(claim.job_id, claim.attempt)
        if attempt.released:
            await self._persist(
                lambda: store.release_attempt(
                    claim.job_id, claim.attempt, "the worker shut down", time.time()
                )
            )
            return
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
        outcome = retried(outcome, claim)
        await self._persist(lambda: store.finish_attempt(claim.job_id, claim.attempt, outcome))
        await self._finished(claim, outcome)

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
            return await asyncio.wait_for(execution.wait(), timeout)
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
                # While the store is away no worker can renew its leases, and
                # they all expire: that is not the loss of every worker. Once
                # back, give the others a lease and a heartbeat to renew
                # theirs before reaping.
                self._reap_after = math.inf
                continue
            if self._reap_after == math.inf:
                self._reap_after = (
                    time.monotonic() + settings.lease_seconds + settings.heartbeat_seconds
                )
            for job_id in reply.lost:
                attempt = self._running.get(job_id)
                if attempt is not None:
                    attempt.fence()
            for job_id in reply.cancel:
                self._on_cancel(job_id, job_id in reply.kill)
            await self._reap()
            await self._sweep()

    async def _end_orphans(self) -> None:
        """End the processes that workers which died on this machine left
        behind, when another machine's worker took their jobs over."""
        try:
            found = await self.store.lost_processes(HOST, time.time() - ORPHAN_SECONDS)
        except JobdockError as exc:
            _log.warning("cannot look for processes left by lost workers: %s", exc)
            return
        for pid, pid_start in found:
            if kill_process_group(pid, pid_start):
                _log.warning("ended process group %d left behind by a lost worker", pid)

    async def _reap(self) -> None:
        if time.monotonic() < self._reap_after:
            return
        try:
            lost = await self.store.reap_expired(time.time(), self.settings.max_lost)
        except JobdockError as exc:
            _log.warning("cannot resolve expired attempts: %s", exc)
            return
        for item in lost:
            _log.warning(
                "attempt %d of job %s lost its worker; job is now %s",
                item.attempt,
                item.job_id,
                item.new_state.value,
            )
            # A process left behind on this machine by a dead server is ended,
            # so that the job does not run twice at once.
            if item.host == HOST and item.pid is not None:
                kill_process_group(item.pid, item.pid_start)
        if lost:
            await self._sweep_containers()

    async def _sweep(self) -> None:
        """Fail jobs past their deadlines; move unfinished workflows on (what a
        crash between a step's end and its workflow's move left); now and
        then, prune finished jobs past their retention (docs/scheduling.md)."""
        settings = self.settings
        try:
            now = time.time()
            await self.store.expire_deadlines(now)
            await self.store.advance_workflows(now, self._planner)
            if now - self._pruned_at >= settings.prune_seconds:
                self._pruned_at = now
                deleted = await self.store.prune(now, settings.keep_finished)
                if deleted:
                    _log.info("pruned %d finished job(s)", deleted)
        except JobdockError as exc:
            _log.warning("cannot sweep deadlines, workflows and retention: %s", exc)
