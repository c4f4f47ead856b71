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

from pydantic import SecretStr

from jobdock.agent.remote_store import RemoteStore
from jobdock.credentials import Credentials
from jobdock.engines import Engines
from jobdock.errors import Unauthenticated
from jobdock.settings import Settings
from jobdock.worker import Worker

_log = logging.getLogger(__name__)


async def run_agent(
    settings: Settings, url: str, credentials: Credentials, stop: asyncio.Event
) -> None:
    """Run jobs from the server at ``url`` until ``stop`` is set."""
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
            worker = Worker(store, settings, engines, worker_id=worker_id)
            await worker.start()
            _log.info("agent of %s started as worker %s", store.url, worker_id)
            stopped, refused = (
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(store.refused.wait()),
            )
            await asyncio.wait({stopped, refused}, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (stopped, refused):
                waiter.cancel()
            if store.refused.is_set():
                _log.error("the server no longer takes this agent's token; stopping")
                await worker.stop(0)
                raise Unauthenticated("the server no longer takes this agent's token")
            _log.info("agent stopping: worker %s drains its jobs", worker_id)
            await worker.stop()
        finally:
            await engines.aclose()
    finally:
        await store.aclose()


def _work_again(store: RemoteStore) -> Callable[[], Awaitable[None]]:
    async def back() -> None:
        # Image jobs that waited for the engine may be claimed now.
        store.events.work_available()

    return back
