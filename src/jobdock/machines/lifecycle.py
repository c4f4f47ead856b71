"""One machine's life, as the autoscaler drives it: launched with an agent
token made for it alone (``requested``, then ``booting`` once its provider
started it), ``ready`` once its agent registered, then ``draining`` while
its provider stops it and its token is revoked, and ``stopped`` (or
``failed``, with why). Each move is one conditional write in the store; a
pool's failures set its back-off (docs/machines.md#pools-and-the-autoscaler).

Imports the providers' interface, the auth and agent-access rules, the
store protocol and the foundation.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable

from jobdock.agent_access import revoke_token
from jobdock.auth import create_token
from jobdock.errors import JobdockError, TokenNotFound
from jobdock.machines.provider import MachineLaunch, Provider, ProviderError
from jobdock.models.machines import MachineRecord, MachineState, PoolState
from jobdock.pool_settings import PoolSettings
from jobdock.store.protocol import Store

_log = logging.getLogger(__name__)

#: Who the autoscaler is in the audit log (its tokens made and revoked).
ACTOR = "autoscaler"
#: The first back-off after a failure, doubled with each failure in a row...
BACKOFF_BASE = 2.0
#: ... up to this.
BACKOFF_MAX = 300.0


def backoff(failures: int) -> float:
    """Seconds to wait before the next start after ``failures`` in a row."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** min(failures - 1, 32))


def fresh_pool(name: str) -> PoolState:
    """A pool's state before anything was recorded of it."""
    return PoolState(name, 0, None, None, None, None)


class Lifecycle:
    """Launches and stops the machines of the pools, for one server."""

    def __init__(self, store: Store, server: str, max_lost: int) -> None:
        self.store = store
        #: This server's name, recorded on each machine it starts.
        self.server = server
        self.max_lost = max_lost

    async def launch(
        self,
        pool: PoolSettings,
        provider: Provider,
        server_url: str,
        recorded: Callable[[str], None] | None = None,
    ) -> MachineRecord | None:
        """Start one machine of ``pool``; its record (None: it failed, and
        the failure is recorded on the machine and the pool). ``recorded``
        is called with its id once it is in the store."""
        now = time.time()
        machine_id = f"m-{pool.name}-{secrets.token_hex(4)}"
        made = await create_token(self.store, f"pool-{pool.name}", agent=True, actor=ACTOR)
        record = MachineRecord(
            id=machine_id,
            pool=pool.name,
            state="requested",
            provider_id=None,
            token_id=made.info.id,
            jobs_done=0,
            requested_at=now,
            booted_at=None,
            last_busy_at=None,
            stopping_at=None,
            stopped_at=None,
            error=None,
            server=self.server,
        )
        await self.store.add_machine(record)
        if recorded is not None:
            recorded(machine_id)
        launch = MachineLaunch(
            machine_id=machine_id,
            pool=pool.name,
            labels=dict(pool.labels),
            server_url=server_url,
            agent_token=made.token,
            agent_args=agent_args(pool, server_url),
            agent_env={
                "JOBDOCK_URL": server_url,
                "JOBDOCK_TOKEN": made.token,
                "JOBDOCK_MACHINE_ID": machine_id,
            },
            tags={
                "jobdock-pool": pool.name,
                "jobdock-server": self.server,
                "jobdock-machine": machine_id,
            },
        )
        try:
            provider_id = await provider.start(launch)
        except ProviderError as exc:
            await self.fail_start(record, exc.message)
            return None
        except Exception as exc:  # a provider's bug must not end the autoscaler
            _log.exception("autoscaler: pool %s: starting a machine failed", pool.name)
            await self.fail_start(record, f"pool {pool.name!r}: {type(exc).__name__}: {exc}")
            return None
        if not await self.store.update_machine(machine_id, {"provider_id": provider_id}, "booting"):
            # Failed meanwhile by another server (its boot timeout): not ours to keep.
            await _stop_quietly(provider, provider_id)
            return None
        _log.info(
            "autoscaler: pool %s: started machine %s (%s)", pool.name, machine_id, provider_id
        )
        return dataclasses.replace(record, state="booting", provider_id=provider_id)

    async def fail_start(self, record: MachineRecord, error: str) -> None:
        """Record a machine that could not be started, and a pool failure."""
        _log.warning("autoscaler: machine %s failed to start: %s", record.id, error)
        now = time.time()
        await self._revoke(record)
        await self.store.update_machine(record.id, {"stopped_at": now, "error": error}, "failed")
        await self.pool_failed(record.pool, error, now)

    async def stop(
        self,
        record: MachineRecord,
        provider: Provider | None,
        *,
        failed: bool = False,
        error: str | None = None,
    ) -> bool:
        """Drain and stop a machine: its provider stops it, its token is
        revoked, and it is recorded ``stopped`` (``failed``, with ``error``).
        Whether it ended (False: the provider failed; it stays ``draining``
        and the next round tries again)."""
        now = time.time()
        if record.state != "draining":
            changes: dict[str, object] = {"stopping_at": now}
            if error is not None:
                changes["error"] = error
            if not await self.store.update_machine(record.id, changes, "draining"):
                return False
        if record.provider_id is not None and provider is not None:
            try:
                await provider.stop(record.provider_id)
            except ProviderError as exc:
                _log.warning("autoscaler: cannot stop machine %s: %s", record.id, exc.message)
                await self.note_pool(record.pool, error=exc.message)
                return False
        await self._revoke(record)
        final: MachineState = "failed" if failed else "stopped"
        await self.store.update_machine(record.id, {"stopped_at": time.time()}, final)
        _log.info("autoscaler: machine %s %s%s", record.id, final, f": {error}" if error else "")
        return True

    async def _revoke(self, record: MachineRecord) -> None:
        if record.token_id is None:
            return
        try:
            await revoke_token(self.store, record.token_id, self.max_lost, ACTOR)
        except TokenNotFound:
            pass
        except JobdockError as exc:
            _log.warning("autoscaler: cannot revoke the token of %s: %s", record.id, exc)

    async def pool_failed(self, pool: str, error: str, now: float) -> None:
        """Count a failure of ``pool`` and back off from starting more."""
        state = await self.pool_state(pool)
        failures = state.failures + 1
        await self.store.record_pool(
            dataclasses.replace(
                state,
                failures=failures,
                backoff_until=now + backoff(failures),
                last_error=error,
                last_decision=f"back off {backoff(failures):g} s after {failures} failure(s)",
                decided_at=now,
            )
        )

    async def pool_succeeded(self, pool: str) -> None:
        """A machine of ``pool`` registered: its failures are forgotten."""
        state = await self.pool_state(pool)
        if state.failures or state.backoff_until is not None:
            await self.store.record_pool(dataclasses.replace(state, failures=0, backoff_until=None))

    async def note_pool(
        self, pool: str, *, decision: str | None = None, error: str | None = None
    ) -> None:
        """Record what the autoscaler decided for ``pool``, or an error."""
        state = await self.pool_state(pool)
        changes: dict[str, object] = {"decided_at": time.time()}
        if decision is not None:
            changes["last_decision"] = decision
        if error is not None:
            changes["last_error"] = error
        await self.store.record_pool(dataclasses.replace(state, **changes))  # type: ignore[arg-type]

    async def pool_state(self, pool: str) -> PoolState:
        for state in await self.store.pool_states():
            if state.name == pool:
                return state
        return fresh_pool(pool)


def agent_args(pool: PoolSettings, server_url: str) -> list[str]:
    """The options of a pool's machine's ``jobdock agent`` (its token
    travels in the environment, JOBDOCK_TOKEN)."""
    args = ["--server", server_url, "--concurrency", str(pool.capacity)]
    for key, value in sorted(pool.labels.items()):
        args += ["--label", f"{key}={value}"]
    if pool.max_jobs:
        args += ["--max-jobs", str(pool.max_jobs)]
    return args


async def _stop_quietly(provider: Provider, provider_id: str) -> None:
    try:
        await provider.stop(provider_id)
    except ProviderError as exc:
        _log.warning("autoscaler: cannot stop %s: %s", provider_id, exc.message)
