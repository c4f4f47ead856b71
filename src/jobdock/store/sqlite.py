"""SQLite specifics: connection settings, transactions, checkpoints, and
the commits of other processes.

Another process may write the same file (``jobdock worker`` beside
``jobdock serve --no-worker``): SQLite tells no one, but a connection's
``PRAGMA data_version`` changes whenever another connection has committed.
The store's writer asks it (:class:`CommitWatch`, store/group_commit.py), so
that claim loops and the scheduler wake at once for the other process's jobs
and schedules, instead of at the next poll. It asks when :class:`CommitBell`
rings (inotify: some process wrote the WAL file, within a millisecond of its
commit), and every so often in case a ring was missed.

SQLite runs in WAL mode. Its automatic checkpoint (copying the WAL back into
the database file, with an fsync) would run inside whichever commit crosses
the threshold, stalling every write queued behind it; jobdock turns it off
and checkpoints from a background thread instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import inotify_simple
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import ConnectionPoolEntry

_log = logging.getLogger(__name__)

#: How often the background checkpoint runs.
CHECKPOINT_SECONDS = 0.5
#: A WAL larger than this (in pages) after a passive checkpoint is truncated,
#: waiting for readers if need be, so that it cannot grow without bound.
WAL_LIMIT_PAGES = 65536
#: How long a write waits for another process's lock on the file.
LOCK_WAIT_SECONDS = 30.0
#: While it waits, it tries again after this long at first...
LOCK_POLL_FIRST = 0.0001
#: ... doubling up to this.
LOCK_POLL_SECONDS = 0.001


def make_engine(url: str, synchronous: str) -> Engine:
    """An engine for a SQLite file with jobdock's settings."""
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": LOCK_WAIT_SECONDS, "check_same_thread": False},
        pool_size=8,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, open transactions.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_SECONDS * 1000)}")
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # The writer takes the write lock up front, so that a second
        # process writing the same file waits instead of failing.
        # On the driver's connection: the same statement through SQLAlchemy
        # costs a tenth of the writer's time under load (py-spy).
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if conn.info.get("writer"):
                if not conn.info.get("busy_timeout_off"):
                    # Its waits for the lock are _begin_immediate's; once
                    # it holds the lock (WAL), nothing else waits for one.
                    cursor.execute("PRAGMA busy_timeout=0")
                    conn.info["busy_timeout_off"] = True
                _begin_immediate(cursor)
            else:
                cursor.execute("BEGIN")
        finally:
            cursor.close()

    return engine


def _begin_immediate(cursor: Any) -> None:
    """Take the write lock, waiting for another process's transaction.

    Not by SQLite's busy handler: it sleeps 1, 2, 5, 10, 15, 20, 25 ms and
    so on between its tries, so that a writer that just missed the lock
    could sleep on long after it was free. Here a try every
    LOCK_POLL_SECONDS at most.
    """
    pause, deadline = LOCK_POLL_FIRST, time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            cursor.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, LOCK_POLL_SECONDS)


class Checkpointer:
    """Copies the WAL back into the database file, off the write path."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobdock-checkpoint")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jobdock-checkpoint")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._checkpoint, "TRUNCATE")
        except Exception as exc:  # another process may hold the file; it checkpoints later
            _log.debug("final SQLite checkpoint skipped: %s", exc)
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            try:
                pages = await loop.run_in_executor(self._thread, self._checkpoint, "PASSIVE")
                if pages > WAL_LIMIT_PAGES:
                    await loop.run_in_executor(self._thread, self._checkpoint, "TRUNCATE")
            except Exception as exc:  # a failed checkpoint is retried on the next turn
                _log.warning("SQLite checkpoint failed: %s", exc)

    def _checkpoint(self, mode: str) -> int:
        """Run one checkpoint; returns the WAL's size in pages.

        It runs on the driver's connection directly: inside a transaction
        (which SQLAlchemy would open) SQLite refuses to checkpoint.
        """
        conn = self._engine.raw_connection()
        try:
            row = conn.cursor().execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        finally:
            conn.close()
        return int(row[1]) if row is not None else 0


class CommitWatch:
    """Tells whether another connection committed to the database since it
    was last asked, from ``PRAGMA data_version`` on the writer's connection
    (which does not count that connection's own commits; a TRUNCATE
    checkpoint counts, a harmless extra wake-up). About 5 us a look."""

    def __init__(self) -> None:
        self._version: int | None = None

    def __call__(self, conn: Connection) -> bool:
        # On the driver's connection: through SQLAlchemy the pragma would
        # open a (write) transaction.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            row = cursor.execute("PRAGMA data_version").fetchone()
        finally:
            cursor.close()
        version = int(row[0])
        changed = self._version is not None and version != self._version
        self._version = version
        return changed


class CommitBell:
    """Rings when a process (this one too) writes the database's WAL file,
    which every commit does: inotify on the file's directory, so that it
    also hears a WAL file made anew. Readable on :meth:`fileno`; :meth:`rang`
    takes what it heard. Which commits were another's, CommitWatch tells."""

    def __init__(self, inotify: inotify_simple.INotify, wal_name: str) -> None:
        self._inotify = inotify
        self._wal_name = wal_name

    @classmethod
    def of(cls, engine: Engine) -> CommitBell | None:
        """The bell of the engine's database file; None for a database in
        memory, or where inotify refuses (its limit of watches reached)."""
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        path = Path(database).absolute()
        try:
            inotify = inotify_simple.INotify(nonblocking=True)
        except OSError as exc:
            _log.info("no inotify (%s): other processes' commits are looked for by polling", exc)
            return None
        try:
            inotify.add_watch(path.parent, inotify_simple.flags.MODIFY)
        except OSError as exc:
            inotify.close()
            _log.info("cannot watch %s (%s): other processes' commits are polled", path.parent, exc)
            return None
        return cls(inotify, f"{path.name}-wal")

    def fileno(self) -> int:
        return int(self._inotify.fileno())

    def rang(self) -> bool:
        """Whether the WAL file was written since the last call."""
        heard = False
        while True:
            try:
                data = os.read(self.fileno(), 65536)
            except BlockingIOError:
                return heard
            except OSError:
                return True  # look, to be safe
            if not data:
                return heard
            heard = heard or any(
                e.name == self._wal_name for e in inotify_simple.parse_events(data)
            )

    def close(self) -> None:
        self._inotify.close()
