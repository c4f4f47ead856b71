"""In-process notifications of changes in the store.

The store announces a change after it is committed; API handlers, the
embedded worker and the scheduler wait on them instead of polling. Changes
made by other processes arrive as the same events: PostgreSQL's
notifications (store/postgres.py), or on SQLite a commit by another
connection to the file (store/sqlite.py), which raises
:meth:`Events.anything_changed`. Waiters still pass a timeout, the
fallback poll, in case a wake-up is lost (a dropped connection).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class JobWatch:
    """A registration for the next change of one job; made before reading the
    job, so that a change between the read and the wait is not missed."""

    def __init__(self, events: Events, job_id: str) -> None:
        self._events = events
        self.job_id = job_id
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait(self, timeout: float) -> bool:
        """Wait for the change; False if ``timeout`` seconds passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self.future
            return True
        except TimeoutError:
            self._events._forget(self)
            return False

    def cancel(self) -> None:
        """Stop watching."""
        self._events._forget(self)


class Events:
    """Wake-ups for job changes, new work and stop requests."""

    def __init__(self) -> None:
        self._watches: dict[str, list[JobWatch]] = {}
        self._work = asyncio.Event()
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._kill_listeners: list[Callable[[str], None]] = []
        #: Counts work_available() calls, for waiters that may miss a wake-up
        #: between two waits (the agents' long poll, api/agent.py).
        self.work_generation = 0
        self._work_waiters: list[asyncio.Future[None]] = []
        self._schedules = asyncio.Event()

    def watch_job(self, job_id: str) -> JobWatch:
        """Start watching ``job_id`` for its next change."""
        watch = JobWatch(self, job_id)
        self._watches.setdefault(job_id, []).append(watch)
        return watch

    def _forget(self, watch: JobWatch) -> None:
        watches = self._watches.get(watch.job_id)
        if watches is not None and watch in watches:
            watches.remove(watch)
            if not watches:
                del self._watches[watch.job_id]
        if not watch.future.done():
            watch.future.cancel()

    def job_changed(self, job_id: str) -> None:
        """A job's record or log changed."""
        watches = self._watches.pop(job_id, None)
        if watches:
            for watch in watches:
                if not watch.future.done():
                    watch.future.set_result(None)

    def work_available(self) -> None:
        """A job became claimable."""
        self._work.set()
        self.work_generation += 1
        waiters, self._work_waiters = self._work_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def work_since(self, generation: int, timeout: float) -> int:
        """Return as soon as a job may have become claimable since
        ``work_generation`` was ``generation`` (at once if it has), or after
        ``timeout``; the generation now. Unlike :meth:`wait_work` it takes
        the wake-up from no other waiter."""
        if self.work_generation == generation:
            waiter = asyncio.get_running_loop().create_future()
            self._work_waiters.append(waiter)
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                pass
            finally:  # timed out, or the waiter's task cancelled
                if waiter in self._work_waiters:
                    self._work_waiters.remove(waiter)
        return self.work_generation

    async def wait_work(self, timeout: float) -> None:
        """Return when a job may have become claimable, or after ``timeout``."""
        await _take(self._work, timeout)

    def schedules_changed(self) -> None:
        """A schedule was added or resumed: its fire time may be the next."""
        self._schedules.set()

    async def wait_schedules(self, timeout: float) -> None:
        """Return when a schedule may fire sooner than thought, or after ``timeout``."""
        await _take(self._schedules, timeout)

    def anything_changed(self) -> None:
        """Another process changed the store, and what it changed is not
        known: every job watched, the claim loops and the scheduler look
        again."""
        for job_id in list(self._watches):
            self.job_changed(job_id)
        self.work_available()
        self.schedules_changed()

    def cancel_requested(self, job_id: str, kill: bool = False) -> None:
        """Someone asked to stop a running job (``kill``: at once)."""
        for listener in list(self._kill_listeners if kill else self._cancel_listeners):
            listener(job_id)

    def on_kill(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(job_id)`` on every request to kill a job at once
        (not also :meth:`on_cancel`'s); returns an unsubscribe."""
        self._kill_listeners.append(listener)
        return lambda: self._kill_listeners.remove(listener)

    def on_cancel(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(job_id)`` on every stop request; returns an unsubscribe."""
        self._cancel_listeners.append(listener)
        return lambda: self._cancel_listeners.remove(listener)


async def _take(event: asyncio.Event, timeout: float) -> None:
    """Wait up to ``timeout`` for ``event``, then clear it (the wake-up is taken)."""
    if not event.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
    event.clear()
