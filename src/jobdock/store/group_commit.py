"""Group commit: many small writes share one transaction and one commit.

Writes queue up while the previous transaction runs; the next transaction
takes all of them. A caller's write is acknowledged only after the commit that
holds it, so batching costs no durability, and one failing write (a refused
fence, a duplicate key) fails alone. With SQLite all writes run on one thread holding one connection, which
is also what SQLite's single-writer design wants.

Given a ``watch`` (SQLite: store/sqlite.py's :class:`CommitWatch`), the
writer also notices commits by other connections to the database, i.e. by
other processes on the same file, since all of this process's writes go
through the writer's connection: after each transaction, and every
``WATCH_SECONDS`` while idle. Given a ``bell`` as well (SQLite:
:class:`~jobdock.store.sqlite.CommitBell`, ringing within a millisecond of
any commit to the file), it listens to it from the first commit of another
process it sees until none came for ``BELL_IDLE_SECONDS``: it then looks
when the bell rings, and only every ``BELL_WATCH_SECONDS`` otherwise. On
another's commit it calls ``on_foreign_commit``, at most once every
``WATCH_SECONDS`` (``BELL_GAP_SECONDS`` with the bell listened to) however
busy the other process is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from jobdock.errors import JobdockError, StoreError

T = TypeVar("T")
Op = Callable[..., Any]

_log = logging.getLogger(__name__)

#: At most this many writes share one transaction.
MAX_BATCH = 512
#: How often an idle writer with a watch looks for other processes' commits.
WATCH_SECONDS = 0.025
#: With a bell: how often an idle writer looks all the same (a ring missed).
BELL_WATCH_SECONDS = 0.25
#: With a bell: the shortest time between two calls of on_foreign_commit.
BELL_GAP_SECONDS = 0.002
#: A ring comes with the write of the log, a moment before its commit can
#: be seen: after a ring that showed no other's commit, the writer looks
#: again after these pauses (else such a commit waited for the 0.25 s look).
BELL_RECHECKS = (0.001, 0.002, 0.004, 0.008)
#: With a bell: listened to from another process's first commit seen (by the
#: look every WATCH_SECONDS) until no other commit came for this long.
BELL_IDLE_SECONDS = 30.0
#: Whether another connection committed since the last call (asked while no write runs).
Watch = Callable[[Connection], bool]


class Bell(Protocol):
    """Rings (its file descriptor readable) when the database may have
    changed; ``rang`` takes the ring."""

    def fileno(self) -> int: ...

    def rang(self) -> bool: ...

    def close(self) -> None: ...


class _Pending:
    __slots__ = ("args", "fn", "future")

    def __init__(self, fn: Op, args: tuple[Any, ...], future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.args = args
        self.future = future


class GroupCommitter:
    """Runs sync write functions ``fn(conn, *args)`` in batched transactions
    on one dedicated thread and connection."""

    def __init__(
        self,
        engine: Engine,
        *,
        watch: Watch | None = None,
        bell: Bell | None = None,
        on_foreign_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._watch = watch
        self._bell = bell if watch is not None else None
        self._rung = False
        self._rechecks = 0
        #: A transaction of the writer's own runs (its rings are its own).
        self._writing = False
        #: The bell is listened to once another process is seen committing.
        self._armed = False
        self._look_every = WATCH_SECONDS
        self._foreign_gap = WATCH_SECONDS
        self._on_foreign_commit = on_foreign_commit
        self._foreign_due: asyncio.TimerHandle | None = None
        self._foreign_at = float("-inf")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobdock-writer")
        self._conn: Connection | None = None
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._thread, self._engine.connect)
        self._conn.info["writer"] = True
        if self._watch is not None:
            await loop.run_in_executor(self._thread, self._watched)
        self._task = asyncio.create_task(self._flush_forever(), name="jobdock-group-commit")

    async def close(self) -> None:
        self._closing = True
        if self._foreign_due is not None:
            self._foreign_due.cancel()
        self._wake.set()
        if self._task is not None:
            await self._task
        loop = asyncio.get_running_loop()
        if self._bell is not None:
            self._disarm()
            self._bell.close()
        if self._conn is not None:
            await loop.run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown(wait=True)

    @property
    def connection(self) -> Connection | None:
        """The connection the writes run on."""
        return self._conn

    def enqueue(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(conn, *args)`` for the next transaction; the future
        resolves once that transaction has committed."""
        if self._closing:
            raise StoreError("the store is closing")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(fn, args, future))
        self._wake.set()
        return future

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the next transaction and return its result."""
        return await self.enqueue(fn, *args)

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                if not await self._idle():
                    continue
                self._wake.clear()
                # One turn of the loop lets the writes that this wake-up
                # caused (a worker claiming the job just queued) join it.
                await asyncio.sleep(0)
                continue
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            self._writing = True
            try:
                results, foreign = await loop.run_in_executor(self._thread, self._commit, batch)
            except Exception as exc:  # the whole transaction failed to commit
                error = _as_store_error(exc)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            finally:
                self._writing = False
            if foreign:
                self._foreign_commit()
            for item, (ok, value) in zip(batch, results, strict=True):
                if item.future.done():
                    continue
                if ok:
                    item.future.set_result(value)
                else:
                    item.future.set_exception(value)

    async def _idle(self) -> bool:
        """Wait for a write; False if the watch's interval passed first
        (having looked for other processes' commits meanwhile)."""
        if self._watch is None:
            await self._wake.wait()
            return True
        look_in = BELL_RECHECKS[-self._rechecks] if self._rechecks else self._look_every
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(look_in):
                await self._wake.wait()
        woken = self._wake.is_set()
        if self._rung or not woken:
            rung, self._rung = self._rung, False
            # Here, not on the writer's thread: no transaction runs now, and
            # the look (microseconds) is cheaper than a hop to the thread,
            # which a write arriving meanwhile would have to wait for.
            if self._watched():
                self._rechecks = 0
                self._foreign_commit()
            elif rung:
                self._rechecks = len(BELL_RECHECKS)
            elif self._rechecks:
                self._rechecks -= 1
            elif not woken and self._armed and self._quiet():
                self._disarm()
        return woken

    def _quiet(self) -> bool:
        """No other process's commit came for BELL_IDLE_SECONDS."""
        return asyncio.get_running_loop().time() - self._foreign_at > BELL_IDLE_SECONDS

    def _arm(self) -> None:
        """Listen to the bell: another process commits to the file."""
        if self._bell is None or self._armed:
            return
        asyncio.get_running_loop().add_reader(self._bell.fileno(), self._ring)
        self._armed = True
        self._look_every, self._foreign_gap = BELL_WATCH_SECONDS, BELL_GAP_SECONDS

    def _disarm(self) -> None:
        """Stop listening: no other process committed for a while (alone, the
        writer's own rings would cost it a wake-up per transaction)."""
        if self._bell is None or not self._armed:
            return
        asyncio.get_running_loop().remove_reader(self._bell.fileno())
        self._bell.rang()
        self._armed = False
        self._look_every, self._foreign_gap = WATCH_SECONDS, WATCH_SECONDS

    def _ring(self) -> None:
        """The bell's descriptor is readable: the idle loop looks. While a
        transaction of the writer's own runs, no other process can commit
        (the writer holds the file's lock): the ring is its own, and the
        look after that transaction sees what came before it."""
        if self._bell is None:
            return
        if self._bell.rang() and not self._writing:
            self._rung = True
            self._wake.set()

    def _foreign_commit(self) -> None:
        """Call on_foreign_commit now, or once the last call is the gap old."""
        self._arm()
        if self._on_foreign_commit is None or self._foreign_due is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._foreign_at + self._foreign_gap - loop.time())
        self._foreign_due = loop.call_later(delay, self._raise_foreign_commit)

    def _raise_foreign_commit(self) -> None:
        self._foreign_due = None
        self._foreign_at = asyncio.get_running_loop().time()
        if self._on_foreign_commit is not None and not self._closing:
            self._on_foreign_commit()

    def _watched(self) -> bool:
        """Whether another connection committed (run where no write runs)."""
        if self._watch is None or self._conn is None:
            return False
        try:
            return self._watch(self._conn)
        except Exception as exc:  # looked for again on the next turn
            _log.debug("cannot look for other processes' commits: %s", exc)
            return False

    def _commit(self, batch: list[_Pending]) -> tuple[list[tuple[bool, Any]], bool]:
        """Run a batch; and whether another connection committed meanwhile.
        The rings of the batch's own writes are taken before that look, so
        that they wake no one; a later ring is another's."""
        results = self._run_batch(batch)
        if self._armed and self._bell is not None:
            self._bell.rang()
        return results, self._watched()

    def _run_batch(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        """Run a batch in one transaction.

        An operation that raises a JobdockError has written nothing (the
        store's operations check before they write), so its error is its
        own. Any other error rolls the transaction back, and each write is
        then run in a transaction of its own, so that only the faulty one
        fails.
        """
        try:
            return self._run_together(batch)
        except Exception as exc:
            if len(batch) == 1:
                return [(False, _as_store_error(exc))]
        return [self._run_alone(item) for item in batch]

    def _run_together(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        conn = self._conn
        assert conn is not None
        results: list[tuple[bool, Any]] = []
        with conn.begin():
            for item in batch:
                try:
                    results.append((True, item.fn(conn, *item.args)))
                except JobdockError as exc:
                    results.append((False, exc))
        return results

    def _run_alone(self, item: _Pending) -> tuple[bool, Any]:
        try:
            return self._run_together([item])[0]
        except Exception as exc:
            return (False, _as_store_error(exc))


def _as_store_error(exc: BaseException) -> JobdockError:
    if isinstance(exc, JobdockError):
        return exc
    _log.warning("store write failed: %s", exc)
    return StoreError(f"the store failed: {exc.__class__.__name__}: {exc}")
