"""The Store contract for wake-ups (issue 17): what may make a job claimable
or a schedule due wakes the claim loops and schedulers of this store and of
every other store on the same database (another process: PostgreSQL's
notifications, SQLite's commits by another connection), and what cannot
wakes none. Runs on every store (conftest.STORES).

A wake-up is waited for with a deadline far shorter than the stores' poll
would be: an event that did not come fails the test.
"""

from __future__ import annotations

import time

from store_actions import T0, claim, exited, submit

from conftest import StoreOpener
from jobdock.events import Events
from jobdock.models import ScheduleSpec
from jobdock.store import Store

#: How long a wake-up from another store may take (PostgreSQL's listener
#: takes up to 0.1 s, SQLite's watch 25 ms) on a loaded machine.
SOON = 2.0


async def woken(events: Events, generation: int) -> bool:
    """Whether a claim loop waiting since ``generation`` is woken within SOON."""
    return await events.work_since(generation, SOON) != generation


async def listening(here: Store, there: Store) -> None:
    """Wait until ``there`` hears ``here``'s writes (PostgreSQL's listener
    connects in the background, and wakes everything when it has), then
    take the wake-ups that this caused."""
    generation = there.events.work_generation
    # A job no claim here takes: it needs a label no worker offers.
    await submit(here, requires={"handshake": "only"})
    assert await woken(there.events, generation), "the other store never heard a submit"
    await there.events.wait_schedules(0)
    await there.events.wait_work(0)


async def test_a_finish_that_frees_a_key_wakes_another_stores_claim(
    open_store: StoreOpener,
) -> None:
    here, there = await open_store(), await open_store()
    await listening(here, there)
    first = await submit(here, concurrency_key="k")
    await submit(here, concurrency_key="k")
    got = await claim(here)
    assert got.job_id == first.id
    generations = here.events.work_generation, there.events.work_generation

    await here.finish_attempt(first.id, got.attempt, exited(0))

    assert here.events.work_generation != generations[0], "the queued job's key is free"
    assert await woken(there.events, generations[1]), "the other store's claim slept on"


async def test_a_finish_with_nothing_queued_wakes_no_claim(store: Store) -> None:
    await submit(store)
    got = await claim(store)
    generation = store.events.work_generation

    await store.finish_attempt(got.job_id, got.attempt, exited(0, at=T0 + 5))

    assert store.events.work_generation == generation


async def test_a_schedule_added_in_another_store_wakes_its_scheduler(
    open_store: StoreOpener,
) -> None:
    here, there = await open_store(), await open_store()
    await listening(here, there)
    spec = ScheduleSpec.model_validate(
        {"name": "nightly", "cron": "0 3 * * *", "job": {"command": ["true"]}}
    )
    waited = time.monotonic()

    await here.create_schedule(spec, T0, T0 + 60)

    await there.events.wait_schedules(SOON)
    assert time.monotonic() - waited < SOON, "the other store's scheduler slept on"


async def test_a_store_is_not_woken_by_its_own_writes(open_store: StoreOpener) -> None:
    here, there = await open_store(), await open_store()
    await listening(there, here)
    generation = here.events.work_generation
    waited = time.monotonic()

    await here.set_secret("alice", "token", b"s3cret", T0)
    await here.events.wait_schedules(0.2)

    assert time.monotonic() - waited >= 0.2, "its own write looked like another process's"
    assert here.events.work_generation == generation
