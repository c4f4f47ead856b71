"""The event loop thread a blocking :class:`~jobdock.Client` runs its
:class:`~jobdock.AsyncClient` on: a daemon, so it never keeps a script alive."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

import anyio
from anyio.from_thread import BlockingPortal

#: How long a client's loop thread may take to start, or to stop and close.
_CLOSE_TIMEOUT = 5.0


def start_loop_thread() -> tuple[BlockingPortal, threading.Thread]:
    """A portal into an event loop on a new thread, a daemon: the interpreter
    never waits for it at exit (for anyio's own portal thread it does)."""
    started: Future[BlockingPortal] = Future()

    async def serve() -> None:
        async with BlockingPortal() as portal:
            started.set_result(portal)
            await portal.sleep_until_stopped()

    thread = threading.Thread(target=anyio.run, args=(serve,), name="jobdock-client", daemon=True)
    thread.start()
    return started.result(_CLOSE_TIMEOUT), thread


def stop_loop_thread(
    portal: BlockingPortal, close: Callable[[], Awaitable[None]], thread: threading.Thread
) -> None:
    """Run ``close`` (the client's) in the loop and stop it; never wait forever (runs at exit too)."""
    with contextlib.suppress(RuntimeError):  # the loop has already stopped
        try:
            portal.start_task_soon(close).result(_CLOSE_TIMEOUT)
        finally:
            portal.start_task_soon(portal.stop, True).result(_CLOSE_TIMEOUT)
    thread.join(_CLOSE_TIMEOUT)
