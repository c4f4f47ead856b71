"""What keeps the store true around the jobs this machine runs, apart from
running them: attempts whose worker was lost (their lease expired) are
resolved, and what those workers left on this machine (process groups,
containers) is ended; jobs past their deadlines fail; workflows move on;
finished jobs past their retention are pruned; cron schedules fire.

``Housekeeping`` does all of it every ``heartbeat_seconds`` once started
(docs/scheduling.md); ``workflow_step_ended`` moves a workflow on as soon as
one of its steps ends.

Imports the engines, the schedules, the store protocol, the runtimes and the
foundation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable

from jobdock.engines import Engines
from jobdock.errors import JobdockError, StoreError
from jobdock.models import JobState
from jobdock.models.outcome import Outcome
from jobdock.models.records import Claim
from jobdock.runtimes.process import kill_process_group
from jobdock.schedules import Scheduler
from jobdock.settings import Settings
from jobdock.store.protocol import Store, WorkflowAdvancer
from jobdock.workflow_plan import WorkflowPlanner
from jobdock.workflows import WORKFLOW_LABEL

_log = logging.getLogger(__name__)

HOST = socket.gethostname()
#: At start, processes of attempts lost this recently on this machine are ended.
ORPHAN_SECONDS = 7 * 86400.0
#: Waits before asking again to move a workflow on that another process held.
ADVANCE_RETRIES = (0.05, 0.2, 1.0)


async def workflow_step_ended(
    store: WorkflowAdvancer, planner: WorkflowPlanner, claim: Claim, outcome: Outcome
) -> None:
    """After a job's end: move on the workflow whose step it ran, if any.
    (A failure here is made good by the next sweep of Housekeeping.)"""
    workflow_id = claim.spec.labels.get(WORKFLOW_LABEL)
    if workflow_id is None or outcome.state is JobState.RETRYING:
        return
    for delay in ADVANCE_RETRIES:
        try:
            if await store.advance_workflow(workflow_id, time.time(), planner):
                return
        except JobdockError as exc:
            _log.warning("cannot move workflow %s on: %s", workflow_id, exc)
            return
        # Another process held it, maybe since before this job ended.
        await asyncio.sleep(delay)


def outage_seconds(settings: Settings) -> float:
    """How late a round of the store's answers may come before it counts as
    an outage: a worker renews every heartbeat, so leases can expire only
    when the store was away for about a lease less two heartbeats."""
    return max(settings.lease_seconds - 2 * settings.heartbeat_seconds, settings.heartbeat_seconds)


class Housekeeping:
    """Reaps, sweeps and fires schedules for one machine, until stopped.

    ``running_here`` says whether this machine's worker runs a job: its
    containers are kept while the store cannot say whether they are live."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        engines: Engines,
        planner: WorkflowPlanner,
        running_here: Callable[[str], bool] = lambda job_id: False,
    ) -> None:
        self.store = store
        self.settings = settings
        self.engines = engines
        #: Makes the jobs of workflow steps and schedule fires under the
        #: server's submit policy.
        self.planner = planner
        self._running_here = running_here
        # The reaper waits until this (monotonic) time; see _tick.
        self._reap_after = 0.0
        self._pruned_at = 0.0
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Resolve attempts lost before this start and end what they left
        here, then begin the rounds and the cron schedules."""
        await self._reap()
        await self._end_orphans()
        self._loops = [
            asyncio.create_task(self._rounds(), name="jobdock-housekeeping"),
            asyncio.create_task(
                Scheduler(self.store, self.planner.policy).run(), name="jobdock-cron"
            ),
        ]

    async def stop(self) -> None:
        """Stop the rounds and the schedules."""
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _rounds(self) -> None:
        heartbeat = self.settings.heartbeat_seconds
        ended = time.monotonic()
        while True:
            await asyncio.sleep(heartbeat)
            if time.monotonic() - ended > heartbeat + outage_seconds(self.settings):
                # This process itself was stopped (suspended, frozen): the
                # workers' leases ran out with nobody able to see them renewed.
                self._hold_reaping()
            await self._tick()
            ended = time.monotonic()

    async def _tick(self) -> None:
        began = time.monotonic()
        answered = await self._reap()
        answered = await self._sweep() and answered
        if not answered:
            # While the store is away no worker can renew its leases, and
            # they all expire: that is not the loss of every worker. Once
            # back, give the others a lease and a heartbeat to renew theirs
            # before reaping.
            self._reap_after = math.inf
        elif self._reap_after == math.inf or time.monotonic() - began > outage_seconds(
            self.settings
        ):
            # Back, or an answer so late that the store was away meanwhile
            # for long enough that leases may have expired with it (a call
            # that hung through a restart instead of failing).
            self._hold_reaping()

    def _hold_reaping(self) -> None:
        """Reap no lease before every worker has had a lease and a heartbeat
        to renew its own."""
        settings = self.settings
        self._reap_after = time.monotonic() + settings.lease_seconds + settings.heartbeat_seconds

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

    async def _reap(self) -> bool:
        """Resolve expired attempts; False if the store did not answer."""
        if time.monotonic() < self._reap_after:
            return True
        try:
            lost = await self.store.reap_expired(time.time(), self.settings.max_lost)
        except JobdockError as exc:
            _log.warning("cannot resolve expired attempts: %s", exc)
            return not isinstance(exc, StoreError)
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
            await self.sweep_containers()
        return True

    async def _sweep(self) -> bool:
        """Fail jobs past their deadlines; move unfinished workflows on (what a
        crash between a step's end and its workflow's move left); now and
        then, prune finished jobs past their retention (docs/scheduling.md).
        False if the store did not answer."""
        settings = self.settings
        try:
            now = time.time()
            await self.store.expire_deadlines(now)
            await self.store.advance_workflows(now, self.planner)
            if now - self._pruned_at >= settings.prune_seconds:
                self._pruned_at = now
                deleted = await self.store.prune(now, settings.keep_finished)
                if deleted:
                    _log.info("pruned %d finished job(s)", deleted)
        except JobdockError as exc:
            _log.warning("cannot sweep deadlines, workflows and retention: %s", exc)
            return not isinstance(exc, StoreError)
        return True

    async def sweep_containers(self) -> None:
        """Remove containers whose attempts are over (left by a lost worker)."""
        containers = self.engines.containers
        if containers is None or not self.engines.images_ok:
            return

        async def live(job_id: str, attempt: int) -> bool:
            try:
                job = await self.store.get_job(job_id)
            except JobdockError:
                return self._running_here(job_id)
            return job.state is JobState.RUNNING and job.attempt == attempt

        try:
            await containers.sweep(live)
        except JobdockError as exc:
            _log.warning("cannot look for containers left by lost workers: %s", exc)
