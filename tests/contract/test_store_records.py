"""Records that no longer load (issue 15): a stored job or schedule that
fails today's validation is failed or skipped by every reader of the store,
never raised to all of them. Each test runs on every store (conftest.STORES);
the bad records are written with SQL, as an older jobdock or a hand could.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy

from jobdock.models import ANONYMOUS, JobSpec, JobState, Reason, ScheduleSpec
from jobdock.store import NewJob, Store
from jobdock.store.sql import SqlStore
from jobdock.submit import new_job_id

T0 = 1_700_000_000.0
LEASE = 30.0
#: A spec an older jobdock took: its image's name ends in a newline.
POISON = '{"image": "busybox\\n:latest"}'


def corrupt(store: Store, sql: str, **params: Any) -> None:
    """Run ``sql`` on the store's database behind its back."""
    assert isinstance(store, SqlStore)
    engine = sqlalchemy.create_engine(store.url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(sql), params)
    finally:
        engine.dispose()


async def submit(store: Store, now: float = T0) -> str:
    job = await store.create_job(
        NewJob(new_job_id(), JobSpec(command=["true"]), b"", now, ANONYMOUS)
    )
    return job.id


async def test_a_claim_fails_a_job_that_does_not_load_and_claims_the_others(
    store: Store,
) -> None:
    bad = await submit(store, T0)
    good = await submit(store, T0 + 1)
    corrupt(store, "UPDATE jobs SET spec = :spec WHERE id = :id", spec=POISON, id=bad)

    claims = await store.claim_jobs("w1", 10, T0 + 2, LEASE)

    assert [c.job_id for c in claims] == [good]
    failed = await store.get_job(bad)
    assert (failed.state, failed.reason) == (JobState.FAILED, Reason.INVALID_RECORD)
    assert failed.message is not None and "cannot be loaded" in failed.message
    assert await store.claim_jobs("w1", 10, T0 + 3, LEASE) == []


async def test_lists_and_gets_show_a_job_that_does_not_load(store: Store) -> None:
    bad = await submit(store, T0)
    corrupt(store, "UPDATE jobs SET spec = :spec WHERE id = :id", spec=POISON, id=bad)

    page = await store.list_jobs()
    job = await store.get_job(bad)

    assert [j.id for j in page.jobs] == [bad]
    assert job.state is JobState.QUEUED
    assert job.message is not None and "image" in job.message


async def test_a_heartbeat_renews_only_the_attempts_its_worker_runs(store: Store) -> None:
    known = await submit(store, T0)
    unknown = await submit(store, T0 + 1)
    await store.claim_jobs("w1", 2, T0 + 2, LEASE)
    await store.cancel_job(unknown, T0 + 3)

    claims = {known: 1}
    await store.heartbeat("w1", claims, lease_until=T0 + 1000)
    lost = await store.reap_expired(T0 + LEASE + 10, max_lost=3)

    # The attempt w1 does not know of expires; its cancel then ends it.
    assert [item.job_id for item in lost] == [unknown]
    assert (await store.get_job(unknown)).state is JobState.CANCELLED
    assert (await store.get_job(known)).state is JobState.RUNNING


async def test_a_schedule_that_does_not_load_is_shown_paused_and_never_due(
    store: Store,
) -> None:
    for name in ("broken", "fine"):
        spec = ScheduleSpec(name=name, cron="* * * * *", job=JobSpec(command=["true"]))
        await store.create_schedule(spec, T0, T0 + 60)
    corrupt(store, "UPDATE schedules SET spec = :spec WHERE name = 'broken'", spec=POISON)

    due = await store.due_schedules(T0 + 61)
    listed = {s.name: s for s in await store.list_schedules()}

    assert [s.name for s in due] == ["fine"]
    assert listed["broken"].paused and not listed["fine"].paused
    assert (await store.next_schedule_fire()) == T0 + 60
    assert [s.name for s in await store.due_schedules(T0 + 61)] == ["fine"]


async def test_a_cancel_ends_at_once_a_running_job_whose_lease_no_one_renews(
    store: Store,
) -> None:
    job_id = await submit(store, T0)
    await store.claim_jobs("w1", 1, T0, LEASE)

    job = await store.cancel_job(job_id, T0 + LEASE + 1)

    assert (job.state, job.reason) == (JobState.CANCELLED, Reason.CANCELLED)


async def test_a_cancel_asks_the_worker_of_a_running_job_whose_lease_is_renewed(
    store: Store,
) -> None:
    job_id = await submit(store, T0)
    await store.claim_jobs("w1", 1, T0, LEASE)

    job = await store.cancel_job(job_id, T0 + 1)

    assert job.state is JobState.RUNNING and job.cancel_requested
