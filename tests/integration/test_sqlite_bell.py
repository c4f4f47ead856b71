"""Another process's commit to the same SQLite file wakes this store at
once through its bell (inotify on the WAL file; store/sqlite.py), which it
listens to from the first such commit its periodic look sees, not at the
writer's next periodic look: with that look made a minute long, the
wake-up still comes within seconds. The other process is a real one (the
``sqlite3`` module in a child Python), writing the real file.

Two writers of one file take turns at its write lock: a write waits for
another connection's transaction, and one that waits past the limit fails
with a store error instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobdock.errors import StoreError
from jobdock.store import group_commit
from jobdock.store import sqlite as sqlite_module
from jobdock.store.sql import SqlStore
from jobdock.store.sqlite import CommitBell
from support import eventually

#: How long the wake-up may take on a loaded 2-core machine (the bell takes
#: about a millisecond; the look it replaces is now a minute away).
SOON = 5.0


def commit_from_another_process(path: Path) -> None:
    """A commit to the file by another process: a job's row made claimable
    is not needed, any commit counts as a change of the database."""
    script = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], timeout=30)\n"
        "conn.execute('CREATE TABLE IF NOT EXISTS bell_test (x INTEGER)')\n"
        "conn.execute('INSERT INTO bell_test VALUES (1)')\n"
        "conn.commit()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)


async def listening(store: SqlStore, path: Path) -> None:
    """Another process's first commit, seen by the periodic look: from then
    on the store listens to its bell."""
    generation = store.events.work_generation
    await asyncio.to_thread(commit_from_another_process, path)
    await store.events.work_since(generation, SOON)


async def test_another_process_commit_wakes_the_store_without_its_periodic_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_commit, "BELL_WATCH_SECONDS", 60.0)
    path = tmp_path / "jobs.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await listening(store, path)
        generation = store.events.work_generation
        await asyncio.to_thread(commit_from_another_process, path)

        woken = await store.events.work_since(generation, SOON)

    assert woken != generation, "the other process's commit woke no claim loop"


async def test_the_stores_own_commits_wake_no_one(tmp_path: Path) -> None:
    # Its own writes ring the bell too; the writer tells them apart.
    path = tmp_path / "jobs.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await listening(store, path)
        generation = store.events.work_generation
        for _ in range(20):
            await store.record_audit("tester", "a write that makes no job claimable", ["job-x"])
        # A wake-up from the bell would come within milliseconds of a ring.
        woken = await store.events.work_since(generation, 0.5)

    assert woken == generation


def test_a_database_in_memory_has_no_bell() -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine("sqlite://")
    assert CommitBell.of(engine) is None


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[threading.Event]:
    """Another connection's transaction holds the file's write lock until the
    yielded event is set (and always by the end of the block); it commits."""
    release = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS lock_test (x INTEGER)")
            release.wait(60)
            conn.execute("COMMIT")
        finally:
            conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        eventually(lambda: _locked(path), what="the other connection to take the lock")
        yield release
    finally:
        release.set()
        holder.join(30)


async def test_a_write_waits_for_another_connections_lock_and_then_commits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        with write_lock_held(path) as release:
            write = asyncio.ensure_future(store.record_audit("tester", "waits", ["job-x"]))
            # While the other holds the lock, the write waits (and does not fail).
            done, _ = await asyncio.wait({write}, timeout=0.3)
            assert not done
            release.set()
            await asyncio.wait_for(write, 30)

    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        audited = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    assert "lock_test" in tables  # the other's transaction committed
    assert audited == 1  # and so did the write that waited for it


async def test_a_lock_held_past_the_wait_fails_the_write_with_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "LOCK_WAIT_SECONDS", 0.3)
    path = tmp_path / "jobs.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        with write_lock_held(path), pytest.raises(StoreError, match="locked"):
            await asyncio.wait_for(store.record_audit("tester", "never", ["job-x"]), 30)
        # Once the lock is free, writes go through again.
        await store.record_audit("tester", "after the lock", ["job-x"])


def _locked(path: Path) -> bool:
    """Whether some connection holds the file's write lock now."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


class PipeBell:
    """A bell the test rings itself (a pipe), to place a ring before the
    commit it announces, as inotify's ring for the log's write can come a
    moment before its commit can be seen."""

    def __init__(self) -> None:
        self._read, self.write = os.pipe()
        os.set_blocking(self._read, False)

    def ring(self) -> None:
        os.write(self.write, b"x")

    def fileno(self) -> int:
        return self._read

    def rang(self) -> bool:
        try:
            return bool(os.read(self._read, 4096))
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self._read)
        os.close(self.write)


async def test_a_ring_that_comes_before_its_commit_still_wakes_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bell = PipeBell()
    monkeypatch.setattr(group_commit, "BELL_WATCH_SECONDS", 60.0)
    # Looks again after the early ring, spread wide for a loaded machine.
    monkeypatch.setattr(group_commit, "BELL_RECHECKS", (0.001, 0.01, 0.1, 1.0))
    monkeypatch.setattr(CommitBell, "of", classmethod(lambda cls, engine: bell))
    path = tmp_path / "jobs.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        await listening(store, path)
        generation = store.events.work_generation
        # The ring, then (a moment later) the commit, which rings no more.
        bell.ring()
        await asyncio.to_thread(commit_from_another_process, path)

        woken = await store.events.work_since(generation, SOON)

    assert woken != generation, "a commit seen only after its ring woke no claim loop"
