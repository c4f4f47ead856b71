"""The autoscaler's rounds in-process, on a real SQLite store and the
command provider's real scripts: what a broken provider or a bad row does
to it (it records them and goes on)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy

from jobdock.machines.autoscaler import Autoscaler
from jobdock.models import JobSpec
from jobdock.models.machines import MachineRecord
from jobdock.models.records import NewJob
from jobdock.settings import Settings
from jobdock.store.sql import SqlStore
from jobdock.submit import new_job_id

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        await asyncio.sleep(0.02)


def settings_of(tmp_path: Path, start: list[str]) -> Settings:
    pool = {
        "name": "gpu",
        "provider": "command",
        "labels": {"pool": "gpu"},
        "max": 2,
        "command": {"start": start, "stop": ["true"], "timeout": 5},
    }
    return Settings(home=tmp_path, tokens=True, pools=[pool])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with SqlStore(f"sqlite:///{tmp_path}/jobs.db") as opened:
        yield opened


async def submit(store: SqlStore) -> None:
    spec = JobSpec(command=["true"], requires={"pool": "gpu"})
    await store.create_job(NewJob(new_job_id(), spec, b"", time.time(), "alice"))


async def test_a_start_script_that_fails_fails_the_machine_and_backs_the_pool_off(
    tmp_path: Path, store: SqlStore
) -> None:
    autoscaler = Autoscaler(store, settings_of(tmp_path, ["sh", "-c", "echo quota >&2; exit 4"]))
    await submit(store)

    await autoscaler.round()
    [failed] = await eventually(lambda: _ended(store))
    await autoscaler.round()
    await autoscaler.stop()

    assert failed.state == "failed"
    assert failed.error == "pool 'gpu' (command): start: 'sh' exited with 4: quota"
    [pool] = await store.pool_states()
    assert pool.failures == 1 and pool.backoff_until is not None
    assert pool.backoff_until > time.time()
    # Backing off: the second round started nothing.
    assert len(await store.list_machines(since=0)) == 1
    assert pool.last_error == failed.error
    stored = await store.find_token(failed.token_id or "")
    assert stored is not None and stored.info.revoked_at is not None


async def test_a_machine_row_that_does_not_load_leaves_the_rounds_going(
    tmp_path: Path, store: SqlStore
) -> None:
    autoscaler = Autoscaler(store, settings_of(tmp_path, ["echo", "vm-1"]))
    engine = sqlalchemy.create_engine(store.url)
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO machines (id, pool, state, jobs_done, requested_at)"
                " VALUES ('m-gpu-bad', 'gpu', 'booting', 'many', 1.0)"
            )
        )
    engine.dispose()
    await submit(store)

    await autoscaler.round()
    [started] = await eventually(lambda: _booting(store))
    await autoscaler.stop()

    assert (started.provider_id, started.pool) == ("vm-1", "gpu")


async def _ended(store: SqlStore) -> list[MachineRecord]:
    return [m for m in await store.list_machines(since=0) if not m.live]


async def _booting(store: SqlStore) -> list[MachineRecord]:
    return [m for m in await store.list_machines() if m.state == "booting"]


async def test_stop_ends_the_rounds_even_if_one_swallows_the_cancellation(
    tmp_path: Path, store: SqlStore
) -> None:
    # Python 3.11's asyncio.wait_for returned a result instead of raising
    # when cancelled just as what it waited for ended: the round went on,
    # and a server sent SIGTERM kept starting machines for hours.
    autoscaler = Autoscaler(store, settings_of(tmp_path, ["echo", "vm-1"]))
    entered = asyncio.Event()
    swallowed = 0

    async def round_that_swallows_one_cancel() -> None:
        nonlocal swallowed
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed += 1

    autoscaler.round = round_that_swallows_one_cancel  # type: ignore[method-assign]
    await autoscaler.start()
    await asyncio.wait_for(entered.wait(), 20)

    stopping = asyncio.create_task(autoscaler.stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)

    assert done, "stop() still waits for the rounds"
    assert swallowed == 1
