"""Run an agent: ask the server how to begin, then the engines and the one
Worker (worker.py) on a RemoteStore, until told to stop; then drain and
give the rest back (docs/agents.md).

Imports the remote store, the worker, the engines, the credentials, the
settings and the foundation.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import SecretStr

from jobdock.agent.interruption import wait_for_notice
from jobdock.agent.remote_store import RemoteStore
from jobdock.credentials import Credentials
from jobdock.engines import Engines
from jobdock.errors import JobdockError, Unauthenticated
from jobdock.settings import Settings
from jobdock.worker import Worker

_log = logging.getLogger(__name__)


async def run_agent(
    settings: Settings,
    url: str,
    credentials: Credentials,
    stop: asyncio.Event,
    interruption_url: str | None = None,
    max_jobs: int = 0,
) -> None:
    """Run jobs from the server at ``url`` until ``stop`` is set, or until
    ``interruption_url`` gives notice that this machine is to be reclaimed:
    then its running jobs are handed back at once and the agent stops.
    With ``max_jobs``, it claims that many jobs in all, and stops once they
    have ended (a machine of a pool with ``max_jobs``)."""
    store = RemoteStore(url, credentials, spool_dir=settings.home / "agent-spool")
    try:
        hello = await store.hello()
        # The server's leases, whatever this machine's settings say; the
        # secrets the store hands over are sealed with the store's own key.
        settings = settings.model_copy(
            update={
                "lease_seconds": float(hello["lease_seconds"]),
                "heartbeat_seconds": float(hello["heartbeat_seconds"]),
                "secret_key": SecretStr(store.secret_key),
            }
        )
        worker_id = f"{hello['worker_prefix']}{socket.gethostname()}-{secrets.token_hex(4)}"
        engines = Engines(settings)
        try:
            await engines.confine()
            await engines.watch(_work_again(store))
            worker = Worker(store, settings, engines, worker_id=worker_id, max_jobs=max_jobs)
            await worker.start()
            _log.info("agent of %s started as worker %s", store.url, worker_id)
            notice = _notice(interruption_url)
            stopped, refused, spent = (
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(store.refused.wait()),
                asyncio.ensure_future(worker.spent.wait()),
            )
            waiters: set[asyncio.Future[Any]] = {stopped, refused, spent, notice}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            if notice.done() and not notice.cancelled() and not store.refused.is_set():
                await _interrupted(store, worker, notice.result())
                return
            if store.refused.is_set():
                _log.error("the server no longer takes this agent's token; stopping")
                await worker.stop(0)
                raise Unauthenticated("the server no longer takes this agent's token")
            if worker.spent.is_set():
                _log.info("agent stopping: worker %s ran its %d job(s)", worker_id, max_jobs)
            else:
                _log.info("agent stopping: worker %s drains its jobs", worker_id)
            await worker.stop()
        finally:
            await engines.aclose()
    finally:
        await store.aclose()


def _notice(url: str | None) -> asyncio.Future[str]:
    """What ``url`` says once it gives notice (never, without one)."""
    if url is None:
        return asyncio.get_running_loop().create_future()
    return asyncio.ensure_future(wait_for_notice(url))


async def _interrupted(store: RemoteStore, worker: Worker, notice: str) -> None:
    """This machine is to be reclaimed: hand its running jobs back at once
    (they run elsewhere, their retries unspent), then stop claiming and
    stop what still runs here (its reports are refused: fenced)."""
    _log.warning("interruption notice (%s): handing back the jobs of %s", notice, worker.id)
    await worker.stop_claiming()
    try:
        handed = await store.hand_back(worker.id)
    except JobdockError as exc:
        # The server is away: what runs here is given back as the worker stops.
        _log.error("could not hand back the jobs of %s: %s", worker.id, exc)
    else:
        _log.info("%d job(s) handed back; stopping", handed)
    await worker.stop(0)


def _work_again(store: RemoteStore) -> Callable[[], Awaitable[None]]:
    async def back() -> None:
        # Image jobs that waited for the engine may be claimed now.
        store.events.work_available()

    return back
