"""ConJob's limits on ``/job/run``: how many runs at once and how many may
start in any one second (its ``maxConcurrentRuns`` and
``maxGlobalRequestsPerSecond``), counted by this server for the whole
server, as ConJob counts them.

A run over a limit is either refused at once (``reject``, ConJob's way: the
route answers 503 ``REJECTED`` and nothing runs) or held until the limits
allow it (``queue``). Only admitted runs count towards the rate, as in
ConJob: a refused call does not push the next one out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from jobdock.settings import Settings

#: The rate's window, seconds (ConJob's sliding window of one second).
_WINDOW = 1.0


class RunLimits:
    """The server's count of ConJob runs, and whether one more may start."""

    def __init__(
        self,
        max_runs: int | None,
        per_second: int | None,
        queue: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_runs = max_runs
        self.per_second = per_second
        self.queue = queue
        self._clock = clock
        self._running = 0
        self._started: collections.deque[float] = collections.deque()
        self._changed = asyncio.Condition()

    @classmethod
    def of(cls, settings: Settings) -> RunLimits:
        """The limits ``settings`` give ``/job/run``."""
        return cls(
            settings.conjob_max_concurrent_runs,
            settings.conjob_max_requests_per_second,
            settings.conjob_over_limit == "queue",
        )

    @property
    def running(self) -> int:
        """Runs admitted and not yet over."""
        return self._running

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[bool]:
        """A run's place for the length of the block: True when it may run,
        False when it is refused (``reject``; the block then runs nothing).
        With ``queue`` it waits for a place, and is always True."""
        async with self._changed:
            while (wait := self._wait_needed()) is not None:
                if not self.queue:
                    break
                # A run that ends notifies; the rate's window needs a timer.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait if wait > 0 else None):
                        await self._changed.wait()
            admitted = wait is None
            if admitted:
                self._running += 1
                self._started.append(self._clock())
        if not admitted:
            yield False
            return
        try:
            yield True
        finally:
            async with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def _wait_needed(self) -> float | None:
        """None when one more run is within the limits; else how long until
        the rate's window has room (0: until a run ends)."""
        now = self._clock()
        while self._started and self._started[0] <= now - _WINDOW:
            self._started.popleft()
        if self.max_runs is not None and self._running >= self.max_runs:
            return 0.0
        if self.per_second is not None and len(self._started) >= self.per_second:
            return max(self._started[0] + _WINDOW - now, 0.001)
        return None
