"""The worker processes of ``jobdock serve --worker-processes N``.

Instead of a worker in its own interpreter, the server starts N ``jobdock
worker`` processes on its own store (each with the server's settings, sent
on its stdin) and keeps them running: one that exits is started again, a
second apart at first and up to a minute apart while they keep failing. On
the server's stop each is sent SIGTERM (it stops claiming and drains, as a
``jobdock worker`` does) and, if still there after the drain time and a
margin, SIGKILL. A worker whose server is killed without a stop is sent
SIGTERM by the kernel (``PR_SET_PDEATHSIG``) and drains the same way.

The API and the worker then share no interpreter (and no GIL): on a machine
with more than one core, each has one. They meet in the store, and a commit
by either wakes the other at once (SQLite: store/sqlite.py's bell).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import pickle
import signal
import sys

from jobdock.settings import Settings

_log = logging.getLogger(__name__)

#: What the child runs: the CLI's entry for a worker started this way.
CHILD = "from jobdock.cli.server import worker_child; worker_child()"
#: Restarts of a worker that keeps exiting: from this many seconds...
FIRST_BACKOFF = 1.0
#: ... doubling up to this many.
MAX_BACKOFF = 60.0
#: A worker that ran this long before it exited is started again at once.
HEALTHY_SECONDS = 30.0
#: On stop: this long beyond the drain time before SIGKILL.
STOP_MARGIN = 5.0
PR_SET_PDEATHSIG = 1


class WorkerProcesses:
    """Starts, restarts and stops ``settings.worker_processes`` workers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._count = settings.worker_processes
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Start every worker (not waiting for them to register)."""
        for slot in range(self._count):
            process = await self._spawn(slot)
            self._tasks.append(
                asyncio.create_task(self._keep(slot, process), name=f"jobdock-worker-{slot}")
            )

    async def _spawn(self, slot: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            stdin=asyncio.subprocess.PIPE,
            env={**os.environ, "JOBDOCK_SERVER_PID": str(os.getpid())},
        )
        assert process.stdin is not None
        process.stdin.write(pickle.dumps(self.settings))
        await process.stdin.drain()
        process.stdin.close()
        self._children[slot] = process
        _log.info("worker process %d (pid %d) started", slot, process.pid)
        return process

    async def _keep(self, slot: int, process: asyncio.subprocess.Process) -> None:
        backoff = FIRST_BACKOFF
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            code = await process.wait()
            if self._stopping.is_set():
                return
            ran = loop.time() - began
            _log.warning(
                "worker process %d (pid %d) exited with %s after %.1f s; starting it again",
                slot,
                process.pid,
                code,
                ran,
            )
            if ran >= HEALTHY_SECONDS:
                backoff = FIRST_BACKOFF
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stopping.wait()
                if self._stopping.is_set():
                    return
                backoff = min(backoff * 2, MAX_BACKOFF)
            process = await self._spawn(slot)

    async def stop(self) -> None:
        """SIGTERM to every worker; SIGKILL to those still there after the
        drain time and a margin."""
        self._stopping.set()
        running = [p for p in self._children.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            waits = {asyncio.ensure_future(p.wait()) for p in running}
            _, late = await asyncio.wait(waits, timeout=self.settings.drain_seconds + STOP_MARGIN)
            for process in running:
                if process.returncode is None:
                    _log.warning("worker process (pid %d) did not stop; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if late:
                await asyncio.wait(late)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def read_settings() -> Settings:
    """In the child: the settings its server sent on stdin. The child is
    sent SIGTERM when its server dies, and ends at once if it already has."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != os.environ.get("JOBDOCK_SERVER_PID"):
        raise SystemExit("jobdock: the server that started this worker is gone")
    settings = pickle.load(sys.stdin.buffer)
    if not isinstance(settings, Settings):
        raise SystemExit("jobdock: a worker process reads its settings from its server")
    return settings
