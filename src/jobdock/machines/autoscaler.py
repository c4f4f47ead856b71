"""The autoscaler: runs in the API server while ``[[pools]]`` are
configured, about once a second, and only on the server that holds the
store's ``autoscaler`` lease (machines/lease.py). Each round it

1. takes the interruption notices of each pool's provider: the machine's
   running attempts are handed back without spending retries
   (``agent_access.hand_back_attempts_of``) and the machine is stopped;
2. looks at each live machine (machines/lifecycle.py): a booting one whose
   agent registered is ``ready``, one that did not within ``boot_timeout``
   is stopped and ``failed`` (and its pool backs off); a ready one whose
   agent was lost (it died without notice: the reaper requeues its jobs)
   is ``failed``; one idle for ``idle_timeout`` (beyond ``min``), or done
   with its ``max_jobs``, is stopped;
3. starts the machines the waiting jobs need (machines/demand.py), up to
   ``max``, none while the pool backs off.

A provider error or a row it cannot read never ends the loop: it is
logged and recorded on the pool (docs/machines.md#pools-and-the-autoscaler).

Imports the providers, the agent-access rules, the store protocol, the
settings and the foundation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import socket
import time
from collections.abc import Mapping, Sequence

from jobdock.agent_access import hand_back_attempts_of, token_prefix
from jobdock.machines.demand import PoolView, Slots, machines_to_start
from jobdock.machines.lease import Lease
from jobdock.machines.lifecycle import Lifecycle
from jobdock.machines.provider import Provider, ProviderError
from jobdock.machines.providers import open_provider
from jobdock.models import WorkerRecord
from jobdock.models.machines import MachineRecord
from jobdock.pool_settings import PoolSettings, pool_of
from jobdock.runtimes.container import engine_address
from jobdock.settings import Settings
from jobdock.store.protocol import Store

_log = logging.getLogger(__name__)

#: Seconds between rounds (sooner when a job is submitted, but never
#: closer than MIN_GAP_SECONDS).
TICK_SECONDS = 1.0
MIN_GAP_SECONDS = 0.2
#: How long the lease lasts unrenewed: another server acts after this.
LEASE_SECONDS = 10.0
#: At most this many waiting jobs are looked at per round.
WAITING_LIMIT = 10_000


def server_url(settings: Settings) -> str:
    """The URL this server is reached at (its agents' default)."""
    scheme = "https" if settings.tls_cert is not None else "http"
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.port}"


class Autoscaler:
    """Starts and stops the machines of ``settings.pools``."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.pools = {pool.name: pool for pool in settings.pools}
        self.server = f"{socket.gethostname()}:{settings.port}-{secrets.token_hex(3)}"
        self.lease = Lease(store, self.server, LEASE_SECONDS)
        self.life = Lifecycle(store, self.server, settings.max_lost)
        self._providers: dict[str, Provider] = {}
        self._task: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._launches: set[asyncio.Task[None]] = set()
        #: Machines whose start is under way here (not yet booting).
        self._starting: set[str] = set()
        self._wanted: set[str] = set()
        self._stopping = False

    async def start(self) -> None:
        """Begin renewing the lease, and the rounds."""
        self._renewing = asyncio.create_task(self._renew(), name="jobdock-autoscaler-lease")
        self._task = asyncio.create_task(self._run(), name="jobdock-autoscaler")

    async def _renew(self) -> None:
        # Apart from the rounds, so that a round slowed by a provider (a
        # stop script that takes its time) does not let the lease lapse
        # and a second server act beside this one.
        while True:
            try:
                await self.lease.renew(time.time())
            except Exception:  # never a reason to stop renewing
                _log.exception("autoscaler: renewing its lease failed")
            await asyncio.sleep(LEASE_SECONDS / 4)

    async def stop(self) -> None:
        """End the rounds, let starts under way finish (a while), give the
        lease up and close the providers. Machines are left running: the
        next holder of the lease takes them over."""
        self._stopping = True
        for task in (self._task, self._renewing):
            if task is not None:
                await _cancelled(task)
        if self._launches:
            _, pending = await asyncio.wait(set(self._launches), timeout=30)
            for task in pending:
                task.cancel()
        await self.lease.release()
        for provider in self._providers.values():
            with contextlib.suppress(Exception):
                await provider.close()

    async def _run(self) -> None:
        events = self.store.events
        generation = events.work_generation
        while not self._stopping:
            acting = self.lease.held
            try:
                if acting:
                    await self.round()
            except Exception:  # one bad round must not end the autoscaler
                _log.exception("autoscaler: a round failed")
            if not acting:
                await asyncio.sleep(TICK_SECONDS)
                continue
            # A new job wakes the next round early, but rounds stay apart.
            await asyncio.sleep(MIN_GAP_SECONDS)
            generation = await events.work_since(generation, TICK_SECONDS - MIN_GAP_SECONDS)

    def _provider(self, pool: PoolSettings) -> Provider | None:
        provider = self._providers.get(pool.name)
        if provider is None:
            try:
                engine = engine_address(self.settings) if pool.provider == "docker" else None
                provider = open_provider(pool, server=self.server, default_engine=engine)
            except ProviderError as exc:
                _log.warning("autoscaler: %s", exc.message)
                return None
            self._providers[pool.name] = provider
        return provider

    async def round(self) -> None:
        """One round: interruptions, each machine's life, then new machines."""
        machines = await self.store.list_machines()
        await self._interruptions(machines)
        machines = await self.store.list_machines()
        now = time.time()
        since = min((m.requested_at for m in machines), default=now) - 1
        workers = await self.store.list_workers(since, now - self.settings.lease_seconds)
        waiting = await self.store.waiting_requirements(now, WAITING_LIMIT)
        pools = list(self.pools.values())
        #: Pools some waiting job is for: their machines are not idle.
        self._wanted = {p.name for r in waiting if (p := pool_of(r, pools)) is not None}
        slots: list[Slots] = []
        machine_workers: set[str] = set()
        for machine in machines:
            mine = _workers_of(machine, workers)
            machine_workers.update(w.id for w in mine)
            try:
                free = await self._look_after(machine, mine, machines)
            except Exception:
                _log.exception("autoscaler: looking after machine %s failed", machine.id)
                continue
            slots += free
        slots += [
            Slots(w.labels, max(0, w.concurrency - w.busy))
            for w in workers
            if w.state == "alive" and w.id not in machine_workers
        ]
        await self._scale(await self.store.list_machines(), slots, waiting)

    async def _interruptions(self, machines: Sequence[MachineRecord]) -> None:
        for pool in self.pools.values():
            provider = self._provider(pool)
            if provider is None:
                continue
            try:
                await self._interrupted(pool, provider, machines)
            except ProviderError as exc:
                await self.life.note_pool(pool.name, error=exc.message)
            except Exception:  # a provider's bug: the other pools go on
                _log.exception("autoscaler: pool %s: reading interruptions failed", pool.name)

    async def _interrupted(
        self, pool: PoolSettings, provider: Provider, machines: Sequence[MachineRecord]
    ) -> None:
        """Hand back the jobs of the pool's machines its provider gives
        notice of, and stop them."""
        notices = await provider.interruptions()
        by_id: dict[str, MachineRecord] = {}
        if notices:
            by_id = {m.provider_id: m for m in machines if m.pool == pool.name and m.provider_id}
        for notice in notices:
            machine = by_id.get(notice.provider_id)
            if machine is None or machine.state == "draining":
                continue
            handed = 0
            if machine.token_id is not None:
                prefix = token_prefix(machine.token_id)
                handed = await hand_back_attempts_of(self.store, prefix, time.time())
            why = f"{notice.reason}: {handed} job(s) handed back"
            _log.warning("autoscaler: machine %s %s", machine.id, why)
            await self.life.stop(machine, provider, error=why)
            await self.life.note_pool(pool.name, decision=f"stop {machine.id}: {why}")

    async def _look_after(
        self,
        machine: MachineRecord,
        mine: Sequence[WorkerRecord],
        machines: Sequence[MachineRecord],
    ) -> list[Slots]:
        """Move one machine on; the room its agent has for more jobs."""
        pool = self.pools.get(machine.pool)
        if pool is None:
            await self.life.stop(machine, None, error="its pool is no longer configured")
            return []
        provider = self._provider(pool)
        if machine.state == "draining":
            await self.life.stop(machine, provider)
            return []
        if machine.state in ("requested", "booting"):
            if not mine:
                await self._booting(pool, provider, machine)
                return []
            machine = await self._registered(machine, mine)
        alive = [w for w in mine if w.state == "alive"]
        if not alive:
            await self._gone(pool, provider, machine, mine)
            return []
        live = sum(1 for m in machines if m.pool == pool.name and m.state != "draining")
        return await self._ready(pool, provider, machine, alive, live)

    async def _registered(
        self, machine: MachineRecord, mine: Sequence[WorkerRecord]
    ) -> MachineRecord:
        """A booting machine whose agent registered (it may have run its
        jobs and stopped since the last round): ``ready``."""
        booted = min(w.started_at.timestamp() for w in mine)
        changes = {"booted_at": booted, "last_busy_at": time.time()}
        await self.store.update_machine(machine.id, changes, "ready")
        await self.life.pool_succeeded(machine.pool)
        return dataclasses.replace(machine, state="ready", booted_at=booted)

    async def _gone(
        self,
        pool: PoolSettings,
        provider: Provider | None,
        machine: MachineRecord,
        mine: Sequence[WorkerRecord],
    ) -> None:
        """A ready machine whose agent is gone: it stopped (its max_jobs
        done, or stopped by someone) or was lost (the machine died without
        notice; the reaper requeues its jobs, and demand starts another)."""
        prefix = token_prefix(machine.token_id or "")
        claimed, running, _ = await self.store.machine_attempts(prefix)
        if claimed - running != machine.jobs_done:
            await self.store.update_machine(machine.id, {"jobs_done": claimed - running})
        lost = any(w.state == "lost" for w in mine)
        error = "its agent was lost (no heartbeat)" if lost else None
        await self.life.stop(machine, provider, failed=lost, error=error)
        if lost:
            await self.life.note_pool(pool.name, error=f"machine {machine.id}: {error}")

    async def _booting(
        self, pool: PoolSettings, provider: Provider | None, machine: MachineRecord
    ) -> None:
        """A machine whose agent has not registered: failed past its boot
        timeout (and its pool backs off)."""
        now = time.time()
        if machine.id in self._starting or now - machine.requested_at <= pool.boot_timeout:
            return
        error = f"its agent did not register within {pool.boot_timeout:g} s"
        await self.life.stop(machine, provider, failed=True, error=error)
        # The back-off runs from the machine's end, not from the round's start.
        await self.life.pool_failed(pool.name, f"machine {machine.id}: {error}", time.time())

    async def _ready(
        self,
        pool: PoolSettings,
        provider: Provider | None,
        machine: MachineRecord,
        alive: Sequence[WorkerRecord],
        live: int,
    ) -> list[Slots]:
        """A ready machine: its jobs counted, stopped once idle past its
        pool's ``idle_timeout`` (beyond ``min``) or done with ``max_jobs``."""
        now = time.time()
        prefix = token_prefix(machine.token_id or "")
        claimed, running, ended = await self.store.machine_attempts(prefix)
        changes: dict[str, object] = {}
        if claimed - running != machine.jobs_done:
            changes["jobs_done"] = claimed - running
        # Busy until its last job ended, even if no round saw it running.
        last_busy = max(machine.last_busy_at or machine.booted_at or now, ended or 0.0)
        if running:
            last_busy = now
        if last_busy != machine.last_busy_at:
            changes["last_busy_at"] = last_busy
        if changes:
            await self.store.update_machine(machine.id, changes)
        why = None
        if pool.max_jobs and claimed >= pool.max_jobs and not running:
            why = f"ran its {pool.max_jobs} job(s)"
        elif (
            not running
            and now - last_busy >= pool.idle_timeout
            and live > pool.min
            and pool.name not in self._wanted
        ):
            why = f"idle for {pool.idle_timeout:g} s"
        if why is None:
            return self._room(pool, alive, claimed)
        await self.life.stop(machine, provider)
        await self.life.note_pool(pool.name, decision=f"stop {machine.id}: {why}")
        return []

    def _room(self, pool: PoolSettings, alive: Sequence[WorkerRecord], claimed: int) -> list[Slots]:
        slots = []
        for worker in alive:
            free = max(0, worker.concurrency - worker.busy)
            if pool.max_jobs:
                free = min(free, max(0, pool.max_jobs - claimed))
            slots.append(Slots(worker.labels, free))
        return slots

    async def _scale(
        self,
        machines: Sequence[MachineRecord],
        slots: Sequence[Slots],
        waiting: Sequence[Mapping[str, str]],
    ) -> None:
        now = time.time()
        views = [
            PoolView(
                pool,
                starting=sum(
                    1
                    for m in machines
                    if m.pool == pool.name and m.state in ("requested", "booting")
                ),
                live=sum(1 for m in machines if m.pool == pool.name and m.state != "draining"),
            )
            for pool in self.pools.values()
        ]
        plan = machines_to_start(waiting, slots, views)
        states = {state.name: state for state in await self.store.pool_states()}
        for name, (count, jobs) in plan.items():
            if count <= 0:
                continue
            pool = self.pools[name]
            state = states.get(name)
            if state is not None and state.backoff_until is not None and state.backoff_until > now:
                decision = f"backing off until {time.strftime('%H:%M:%S', time.gmtime(state.backoff_until))} UTC"
                if state.last_decision != decision:
                    await self.life.note_pool(name, decision=decision)
                continue
            provider = self._provider(pool)
            if provider is None:
                continue
            await self.life.note_pool(name, decision=f"start {count}: {jobs} job(s) wait")
            for _ in range(count):
                await self._launch(pool, provider)

    async def _launch(self, pool: PoolSettings, provider: Provider) -> None:
        """Start one machine in the background: its record is written
        first, so the next rounds count it as starting."""
        url = pool.server_url or server_url(self.settings)
        started = asyncio.Event()
        ids: list[str] = []

        def recorded(machine_id: str) -> None:
            ids.append(machine_id)
            self._starting.add(machine_id)
            started.set()

        async def launch() -> None:
            try:
                await self.life.launch(pool, provider, url, recorded)
            except Exception:
                _log.exception("autoscaler: pool %s: a start failed", pool.name)
            finally:
                started.set()
                self._starting.difference_update(ids)

        task = asyncio.create_task(launch(), name=f"jobdock-launch-{pool.name}")
        self._launches.add(task)
        task.add_done_callback(self._launches.discard)
        await started.wait()


async def _cancelled(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for its end, cancelling it again should
    something inside swallow a cancellation (asyncio.wait_for did, before
    Python 3.12, when what it waited for ended at that moment: a server
    then never stopped)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1)
    if not task.cancelled() and task.exception() is not None:
        _log.error("autoscaler: %s ended with an error", task.get_name(), exc_info=task.exception())


def _workers_of(machine: MachineRecord, workers: Sequence[WorkerRecord]) -> list[WorkerRecord]:
    if machine.token_id is None:
        return []
    prefix = token_prefix(machine.token_id)
    return [w for w in workers if w.id.startswith(prefix)]
