"""The Store contract for scheduling (docs/scheduling.md): priorities,
run_at, retries, idempotent submits, concurrency limits, deadlines,
retention and cron schedules. Runs on every store (conftest.STORES); times
are passed explicitly.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from store_actions import LEASE, T0, claim, exited, submit

from jobdock.errors import JobNotFound, ScheduleExists, ScheduleNotFound
from jobdock.models import ANONYMOUS, Job, JobSpec, JobState, Reason, ScheduleSpec, Stream
from jobdock.models.records import FirePlan, Limits
from jobdock.store import LogChunk, NewJob, Outcome, Store
from jobdock.store.migrate import alembic_config
from jobdock.submit import new_job_id


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def claim_all(store: Store, now: float = T0, limits: Limits | None = None) -> list[str]:
    claims = await store.claim_jobs("w1", 100, now, LEASE, limits=limits)
    return [c.job_id for c in claims]


# -- priorities and run_at ------------------------------------------------------------


async def test_higher_priority_starts_first_then_submission_order(store: Store) -> None:
    low = await submit(store, priority=-5)
    first = await submit(store)
    urgent = await submit(store, priority=10)
    second = await submit(store)

    order = [(await claim(store)).job_id for _ in range(4)]

    assert order == [urgent.id, first.id, second.id, low.id]


async def test_a_job_with_a_future_run_at_waits_scheduled_until_then(store: Store) -> None:
    later = await submit(store, run_at=at(T0 + 60))
    sooner = await submit(store, run_at=at(T0 + 30))

    assert (await store.get_job(later.id)).state is JobState.SCHEDULED
    assert await claim_all(store, T0 + 29) == []
    assert await store.next_due() == T0 + 30
    assert await claim_all(store, T0 + 30) == [sooner.id]
    assert await store.next_due() == T0 + 60
    assert await claim_all(store, T0 + 61) == [later.id]
    assert await store.next_due() is None


async def test_a_cancelled_scheduled_job_is_never_due(store: Store) -> None:
    job = await submit(store, run_at=at(T0 + 30))
    await store.cancel_job(job.id, T0 + 1)

    assert await store.next_due() is None
    assert await claim_all(store, T0 + 31) == []
    assert (await store.get_job(job.id)).state is JobState.CANCELLED


# -- retries ----------------------------------------------------------------------------


def retrying(at_: float, code: int = 1) -> Outcome:
    return Outcome(
        state=JobState.RETRYING,
        reason=Reason.EXITED,
        message=f"exited with code {code}",
        finished_at=T0 + 5,
        exit_code=code,
        next_attempt_at=at_,
    )


async def test_a_retrying_job_shows_its_next_attempt_and_runs_again_then(store: Store) -> None:
    job = await submit(store, retry={"max_attempts": 3})
    first = await claim(store)
    await store.finish_attempt(job.id, first.attempt, retrying(T0 + 20))

    waiting = await store.get_job(job.id)
    assert waiting.state is JobState.RETRYING
    assert waiting.next_attempt_at == at(T0 + 20)
    assert waiting.finished_at is None
    assert await claim_all(store, T0 + 19) == []

    second = await claim(store, now=T0 + 20)
    assert (second.attempt, second.failures) == (2, 1)
    await store.finish_attempt(job.id, second.attempt, exited(0, T0 + 25))
    done = await store.get_job(job.id)
    assert done.state is JobState.SUCCEEDED
    assert [(a.number, a.exit_code) for a in done.attempts] == [(1, 1), (2, 0)]


async def test_a_job_lost_with_its_worker_runs_again_without_spending_its_budget(
    store: Store,
) -> None:
    await submit(store, retry={"max_attempts": 2})
    first = await claim(store, lease=10)
    [lost] = await store.reap_expired(T0 + 11, max_lost=3)

    assert lost.new_state is JobState.QUEUED
    again = await claim(store, now=T0 + 12)
    assert (again.attempt, again.failures) == (first.attempt + 1, 0)


async def test_a_lost_worker_can_be_made_to_spend_the_budget(store: Store) -> None:
    job = await submit(
        store,
        retry={"max_attempts": 2, "count_worker_lost": True, "backoff": {"jitter": 0}},
    )
    await claim(store, lease=10)
    [lost] = await store.reap_expired(T0 + 11, max_lost=3)

    assert lost.new_state is JobState.RETRYING
    assert (await store.get_job(job.id)).next_attempt_at == at(T0 + 12)
    second = await claim(store, now=T0 + 12, lease=10)
    assert second.failures == 1
    [lost] = await store.reap_expired(T0 + 23, max_lost=3)
    assert lost.new_state is JobState.FAILED


# -- idempotent submits -------------------------------------------------------------------


async def test_concurrent_submits_with_one_idempotency_key_make_one_job(
    store: Store, open_store: Any
) -> None:
    other_server = await open_store()

    async def one(target: Store) -> str:
        spec = JobSpec(command=["true"], idempotency_key="deploy-42")
        return (await target.create_job(NewJob(new_job_id(), spec, b"", T0))).id

    ids = await asyncio.gather(*(one(s) for _ in range(10) for s in (store, other_server)))

    assert len(set(ids)) == 1
    page = await store.list_jobs(limit=100)
    assert [job.id for job in page.jobs] == [ids[0]]


async def test_an_idempotency_key_is_its_owners_own(store: Store) -> None:
    async def submit_as(owner: str) -> Job:
        spec = JobSpec(command=["true"], idempotency_key="nightly")
        return await store.create_job(NewJob(new_job_id(), spec, b"", T0, owner))

    alices = await submit_as("alice")
    bobs = await submit_as("bob")
    again = await submit_as("alice")

    assert bobs.id != alices.id, "another owner's job with the key is not returned"
    assert bobs.owner == "bob"
    assert again.id == alices.id
    assert len((await store.list_jobs(limit=10)).jobs) == 2


# -- concurrency limits ------------------------------------------------------------------------


async def test_a_concurrency_key_runs_at_most_its_limit_in_priority_order(store: Store) -> None:
    jobs = [await submit(store, concurrency_key="deploy", concurrency_limit=2) for _ in range(4)]
    urgent = await submit(
        store, concurrency_key="deploy", concurrency_limit=2, priority=1, labels={"env": "prod"}
    )
    free = await submit(store)

    started = await claim_all(store)

    assert set(started) == {urgent.id, jobs[0].id, free.id}
    assert (await store.get_job(urgent.id)).labels == {"env": "prod"}, "the claim keeps labels"
    assert await claim_all(store) == []
    await store.finish_attempt(urgent.id, 1, exited(0))
    assert await claim_all(store) == [jobs[1].id]


async def test_the_servers_limit_for_a_key_wins_and_zero_pauses_it(store: Store) -> None:
    for _ in range(3):
        await submit(store, concurrency_key="db", concurrency_limit=5)

    assert await claim_all(store, limits=Limits(per_key={"db": 0})) == []
    assert len(await claim_all(store, limits=Limits(per_key={"db": 2}))) == 2
    assert await claim_all(store, limits=Limits(per_key={"db": 2})) == []


async def test_another_owners_jobs_under_a_key_do_not_hold_back_the_keys_owner(
    store: Store,
) -> None:
    squatter = await submit(store, owner="bob", concurrency_key="alice-deploy")
    alices = await submit(store, owner="alice", concurrency_key="alice-deploy")
    bobs_second = await submit(store, owner="bob", concurrency_key="alice-deploy")

    started = await claim_all(store)

    assert set(started) == {squatter.id, alices.id}, "each owner's key counts apart"
    assert bobs_second.id not in started, "bob's own key is still limited"
    assert await claim_all(store, limits=Limits(per_key={"alice-deploy": 1})) == []


async def test_a_shared_key_counts_every_owners_jobs_together(store: Store) -> None:
    shared = Limits(per_key={"db-migrate": 1}, shared=frozenset({"db-migrate"}))
    alices = await submit(store, owner="alice", concurrency_key="db-migrate")
    bobs = await submit(store, owner="bob", concurrency_key="db-migrate")

    assert await claim_all(store, limits=shared) == [alices.id]
    assert await claim_all(store, limits=shared) == []
    await store.finish_attempt(alices.id, 1, exited(0))
    assert await claim_all(store, limits=shared) == [bobs.id]


async def test_the_store_wide_limit_caps_running_jobs(store: Store) -> None:
    for _ in range(5):
        await submit(store)

    assert await claim_all(store, limits=Limits(max_running=0)) == []
    assert len(await claim_all(store, limits=Limits(max_running=3))) == 3
    assert await claim_all(store, limits=Limits(max_running=3)) == []


async def test_one_owners_jobs_beyond_the_per_owner_limit_wait_while_anothers_start(
    store: Store,
) -> None:
    alices = [await submit(store, owner="alice") for _ in range(4)]
    bobs = [await submit(store, owner="bob") for _ in range(2)]
    limits = Limits(per_owner=2)

    first = await claim_all(store, limits=limits)

    assert set(first) == {alices[0].id, alices[1].id, bobs[0].id, bobs[1].id}
    assert await claim_all(store, limits=limits) == [], "alice's others wait"
    await store.finish_attempt(bobs[0].id, 1, exited(0))
    assert await claim_all(store, limits=limits) == [], "bob's room is not alice's"
    await store.finish_attempt(alices[0].id, 1, exited(0))
    assert await claim_all(store, limits=limits) == [alices[2].id]
    assert await claim_all(store, limits=Limits(per_owner=0)) == []


async def test_concurrent_claims_from_several_servers_keep_an_owner_within_the_limit(
    store: Store, open_store: Any
) -> None:
    others = [await open_store() for _ in range(2)]
    for _ in range(20):
        await submit(store, owner="alice")
    limits = Limits(per_owner=3)

    rounds = await asyncio.gather(
        *(
            s.claim_jobs(f"w{i}", 8, T0, LEASE, limits=limits)
            for i, s in enumerate([store, *others] * 3)
        )
    )

    assert sum(len(claims) for claims in rounds) == 3


async def test_concurrent_claims_from_several_servers_keep_a_key_within_its_limit(
    store: Store, open_store: Any
) -> None:
    others = [await open_store() for _ in range(2)]
    for _ in range(30):
        await submit(store, concurrency_key="k", concurrency_limit=3)

    rounds = await asyncio.gather(
        *(s.claim_jobs(f"w{i}", 8, T0, LEASE) for i, s in enumerate([store, *others] * 3))
    )

    assert sum(len(claims) for claims in rounds) == 3
    page = await store.list_jobs(states=[JobState.RUNNING], limit=100)
    assert len(page.jobs) == 3


# -- deadlines -----------------------------------------------------------------------------------


async def test_a_job_not_started_by_its_queue_timeout_fails_with_reason_deadline(
    store: Store,
) -> None:
    job = await submit(store, queue_timeout="10s")
    started = await submit(store, queue_timeout="10s")
    await claim(store)  # the first in line starts in time
    assert await claim_all(store, T0 + 11) == [], "past its deadline it is not started"

    assert await store.expire_deadlines(T0 + 11) == [started.id]
    failed = await store.get_job(started.id)
    assert (failed.state, failed.reason) == (JobState.FAILED, Reason.DEADLINE)
    assert (await store.get_job(job.id)).state is JobState.RUNNING


async def test_a_retrying_job_past_its_total_timeout_fails(store: Store) -> None:
    job = await submit(store, total_timeout="1m", retry={"max_attempts": 5})
    first = await claim(store)
    assert first.finish_by == T0 + 60
    await store.finish_attempt(job.id, first.attempt, retrying(T0 + 50))

    assert await store.expire_deadlines(T0 + 61) == [job.id]
    assert (await store.get_job(job.id)).reason is Reason.DEADLINE


# -- retention -------------------------------------------------------------------------------------


async def test_prune_deletes_finished_jobs_past_retention_with_their_logs(store: Store) -> None:
    short = await submit(store, keep_for="1h")
    default = await submit(store)
    waiting = await submit(store, run_at=at(T0 + 10_000), keep_for="1s")
    for job in (short, default):
        got = await claim(store)
        chunk = LogChunk(seq=0, stream=Stream.STDOUT, offset=0, merged_offset=0, data=b"out\n")
        await store.append_logs(job.id, got.attempt, [chunk])
        await store.finish_attempt(job.id, got.attempt, exited(0, T0 + 5))

    assert await store.prune(T0 + 3000, keep_default=None) == 0
    assert await store.prune(T0 + 3700, keep_default=None) == 1
    remaining = {job.id for job in (await store.list_jobs(limit=10)).jobs}
    assert remaining == {default.id, waiting.id}
    assert await store.prune(T0 + 3700, keep_default=86400) == 0
    assert await store.prune(T0 + 3700, keep_default=None, older_than=60) == 1
    assert {job.id for job in (await store.list_jobs(limit=10)).jobs} == {waiting.id}
    with pytest.raises(JobNotFound):
        await store.read_logs(short.id, attempt=1, stream=None, offset=0)


# -- cron schedules -----------------------------------------------------------------------------------


def plan(name: str, expected: float, fire_at: float, owner: str = ANONYMOUS) -> FirePlan:
    spec = JobSpec(command=["true"], idempotency_key=f"schedule:{name}:{fire_at:.0f}")
    job = NewJob(new_job_id(), spec, b"", T0, owner)
    return FirePlan(name, expected, fire_at + 60, fire_at, job, owner)


async def test_a_fire_time_makes_one_job_however_many_servers_fire_it(
    store: Store, open_store: Any
) -> None:
    other_server = await open_store()
    spec = ScheduleSpec(name="nightly", cron="* * * * *", job=JobSpec(command=["true"]))
    await store.create_schedule(spec, T0 - 60, T0)
    [due] = await store.due_schedules(T0 + 1)
    assert due.name == "nightly"

    made = await asyncio.gather(
        *(s.fire_schedule(plan("nightly", T0, T0), T0 + 1) for s in (store, other_server) * 3)
    )

    assert len([job_id for job_id in made if job_id]) == 1
    after = await store.get_schedule("nightly")
    assert after.next_fire_at == at(T0 + 60)
    assert after.last_job_id in made
    assert await store.due_schedules(T0 + 1) == []


async def test_a_schedule_keeps_its_owner_and_lists_filter_by_owner(store: Store) -> None:
    job = JobSpec(command=["true"])
    await store.create_schedule(ScheduleSpec(name="a", cron="* * * * *", job=job), T0, T0, "alice")
    await store.create_schedule(ScheduleSpec(name="b", cron="* * * * *", job=job), T0, T0, "bob")

    assert (await store.get_schedule("a", owner="alice")).owner == "alice"
    assert [s.name for s in await store.list_schedules("bob")] == ["b"]
    assert [s.name for s in await store.list_schedules()] == ["a", "b"]


async def test_schedule_names_are_per_owner(store: Store) -> None:
    def nightly(cron: str) -> ScheduleSpec:
        return ScheduleSpec(name="nightly", cron=cron, job=JobSpec(command=["true"]))

    await store.create_schedule(nightly("0 1 * * *"), T0, T0, "alice")
    bobs = await store.create_schedule(nightly("0 2 * * *"), T0, T0, "bob")

    assert bobs.owner == "bob", "bob may use a name alice uses; he learns nothing of hers"
    with pytest.raises(ScheduleExists):
        await store.create_schedule(nightly("0 3 * * *"), T0, T0, "alice")
    assert (await store.get_schedule("nightly", owner="alice")).cron == "0 1 * * *"
    await store.set_schedule_paused("nightly", True, None, owner="bob")
    assert not (await store.get_schedule("nightly", owner="alice")).paused
    [due] = await store.due_schedules(T0)
    assert due.owner == "alice"

    fired = await store.fire_schedule(plan("nightly", T0, T0, "alice"), T0)

    assert fired is not None and (await store.get_job(fired)).owner == "alice"
    assert (await store.get_schedule("nightly", owner="alice")).last_job_id == fired
    assert (await store.get_schedule("nightly", owner="bob")).last_job_id is None
    await store.delete_schedule("nightly", owner="bob")
    with pytest.raises(ScheduleNotFound):
        await store.get_schedule("nightly", owner="bob")
    assert [s.owner for s in await store.list_schedules()] == ["alice"]


async def test_overlap_forbid_skips_while_the_last_job_is_active(store: Store) -> None:
    spec = ScheduleSpec(
        name="sync", cron="* * * * *", job=JobSpec(command=["true"]), overlap="forbid"
    )
    await store.create_schedule(spec, T0 - 60, T0)
    first = await store.fire_schedule(plan("sync", T0, T0), T0)
    assert first is not None

    assert await store.fire_schedule(plan("sync", T0 + 60, T0 + 60), T0 + 60) is None
    await store.cancel_job(first, T0 + 61)
    assert await store.fire_schedule(plan("sync", T0 + 120, T0 + 120), T0 + 120) is not None


async def test_overlap_replace_stops_the_running_job(store: Store) -> None:
    spec = ScheduleSpec(
        name="sync", cron="* * * * *", job=JobSpec(command=["true"]), overlap="replace"
    )
    await store.create_schedule(spec, T0 - 60, T0)
    first = await store.fire_schedule(plan("sync", T0, T0), T0)
    await claim(store)

    second = await store.fire_schedule(plan("sync", T0 + 60, T0 + 60), T0 + 60)

    assert second is not None and second != first
    assert first is not None and (await store.get_job(first)).cancel_requested


async def test_paused_schedules_are_not_due(store: Store) -> None:
    spec = ScheduleSpec(name="s", cron="* * * * *", job=JobSpec(command=["true"]))
    await store.create_schedule(spec, T0 - 60, T0)
    await store.set_schedule_paused("s", True, None)

    assert await store.due_schedules(T0 + 5) == []
    assert await store.next_schedule_fire() is None
    resumed = await store.set_schedule_paused("s", False, T0 + 60)
    assert resumed.next_fire_at == at(T0 + 60)
    assert [s.name for s in await store.list_schedules()] == ["s"]
    await store.delete_schedule("s")
    assert await store.list_schedules() == []


async def test_schedules_made_before_names_were_per_owner_keep_theirs(
    make_store: Any,
) -> None:
    """Migration 0009 re-keys schedules by (owner, name), keeping each."""
    unopened = make_store()
    engine = create_engine(unopened.url)
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), "0007")
        conn.execute(
            text(
                "INSERT INTO schedules (name, owner, cron, tz, spec, overlap, catchup,"
                " paused, created_at, next_fire_at) VALUES ('nightly', 'alice', '0 3 * * *',"
                " 'UTC', '{\"command\": [\"true\"]}', 'allow', 'skip', false, 1.0, 2.0)"
            )
        )
        conn.commit()
    engine.dispose()
    await unopened.open()
    try:
        kept = await unopened.get_schedule("nightly", owner="alice")
        assert (kept.cron, kept.next_fire_at) == ("0 3 * * *", at(2.0))
        spec = ScheduleSpec(name="nightly", cron="0 4 * * *", job=JobSpec(command=["true"]))
        assert (await unopened.create_schedule(spec, T0, T0, "bob")).owner == "bob"
    finally:
        await unopened.close()
