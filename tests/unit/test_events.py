"""The in-process wake-ups (events.py): what another process's unknown
change (``anything_changed``) and a schedule's change wake."""

from __future__ import annotations

import asyncio
import time

from jobdock.events import Events


async def test_anything_changed_wakes_every_waiter_of_every_kind() -> None:
    events = Events()
    watch = events.watch_job("job-1")
    generation = events.work_generation
    work = asyncio.create_task(events.work_since(generation, 30))
    schedules = asyncio.create_task(events.wait_schedules(30))
    await asyncio.sleep(0)  # let the waiters wait

    events.anything_changed()

    async with asyncio.timeout(5):
        assert await watch.wait(30)
        assert await work != generation
        await schedules


async def test_a_schedule_change_before_the_wait_is_not_missed() -> None:
    events = Events()
    events.schedules_changed()
    started = time.monotonic()

    await events.wait_schedules(30)

    assert time.monotonic() - started < 5


async def test_the_schedulers_wait_ends_at_its_timeout_without_a_change() -> None:
    events = Events()
    events.work_available()  # not a schedule's change
    started = time.monotonic()

    await events.wait_schedules(0.05)

    assert time.monotonic() - started >= 0.05
