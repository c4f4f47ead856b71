"""The Store contract for jobs: creating and reading them, listing with
filters and pages, and cancelling.

Every test runs once per implementation (see conftest.STORES). Times are
passed explicitly (``now``, leases), never waited for.
"""

from __future__ import annotations

from typing import Any

import pytest
from store_actions import AFTER_LEASE, LEASE, T0, claim, exited, submit

from jobdock.errors import IllegalTransition, JobNotFound, StoreError
from jobdock.models import ANONYMOUS, Job, JobSpec, JobState, Reason, timestamp
from jobdock.store import NewJob, Outcome, Store
from jobdock.submit import new_job_id


def cancelled(at: float = T0 + 5) -> Outcome:
    return Outcome(
        state=JobState.CANCELLED,
        reason=Reason.CANCELLED,
        message="stopped on request; killed by signal 15 (SIGTERM)",
        finished_at=at,
        signal=15,
    )


async def ids(store: Store, **filters: Any) -> list[str]:
    page = await store.list_jobs(**filters)
    return [job.id for job in page.jobs]


# -- creating and reading jobs ---------------------------------------------------


async def test_a_created_job_is_queued_and_reads_back_as_submitted(store: Store) -> None:
    created = await submit(
        store,
        command=["python3", "-c", "print(1)"],
        env={"MODE": "fast"},
        cwd="/tmp",
        timeout="10m",
        name="nightly-report",
        labels={"team": "data", "app.kubernetes.io/name": "report"},
        on_worker_lost="fail",
        stdin=b"\x00\x01binary\xff",
    )

    fetched = await store.get_job(created.id)

    assert fetched == created
    assert fetched.state is JobState.QUEUED
    assert fetched.name == "nightly-report"
    assert fetched.labels == {"team": "data", "app.kubernetes.io/name": "report"}
    assert fetched.spec.command == ["python3", "-c", "print(1)"]
    assert fetched.spec.env == {"MODE": "fast"}
    assert fetched.spec.cwd == "/tmp"
    assert fetched.spec.timeout == 600.0
    assert fetched.spec.on_worker_lost == "fail"
    assert fetched.spec.stdin is None, "the input is stored apart from the spec"
    assert fetched.stdin_bytes == len(b"\x00\x01binary\xff")
    assert fetched.created_at == timestamp(T0)
    assert fetched.attempt == 0
    assert fetched.attempts == []
    assert fetched.started_at is None and fetched.finished_at is None


async def test_getting_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound) as raised:
        await store.get_job("0123456789abcdef")
    assert raised.value.job_id == "0123456789abcdef"


async def test_jobs_created_together_read_back_in_order(store: Store) -> None:
    new = [
        NewJob(new_job_id(), JobSpec(command=["true"], name=f"n{i}"), b"", T0, "ann")
        for i in range(3)
    ]

    created = await store.create_jobs(new)

    assert [job.id for job in created] == [job.id for job in new]
    assert [await store.get_job(job.id) for job in new] == created
    assert all(job.state is JobState.QUEUED for job in created)


async def test_jobs_created_together_are_stored_all_or_none(store: Store) -> None:
    taken = await submit(store)
    fresh = NewJob(new_job_id(), JobSpec(command=["true"]), b"", T0, ANONYMOUS)
    clash = NewJob(taken.id, JobSpec(command=["false"]), b"", T0, ANONYMOUS)

    with pytest.raises(StoreError):
        await store.create_jobs([fresh, clash])

    assert await ids(store) == [taken.id]


async def test_a_job_created_together_with_a_taken_idempotency_key_is_the_existing_one(
    store: Store,
) -> None:
    first = await submit(store, idempotency_key="k1")
    again = NewJob(
        new_job_id(), JobSpec(command=["true"], idempotency_key="k1"), b"", T0, ANONYMOUS
    )
    other = NewJob(
        new_job_id(), JobSpec(command=["true"], idempotency_key="k2"), b"", T0, ANONYMOUS
    )

    created = await store.create_jobs([again, other])

    assert [job.id for job in created] == [first.id, other.id]


# -- listing -------------------------------------------------------------------


async def test_jobs_are_listed_newest_first(store: Store) -> None:
    first = await submit(store, now=T0)
    second = await submit(store, now=T0 + 1)
    third = await submit(store, now=T0 + 2)

    assert await ids(store) == [third.id, second.id, first.id]


async def test_listing_filters_by_state(store: Store) -> None:
    running = await submit(store, now=T0)
    cancelled_job = await submit(store, now=T0 + 1)
    queued = await submit(store, now=T0 + 2)
    assert (await claim(store)).job_id == running.id
    await store.cancel_job(cancelled_job.id, T0 + 3)

    assert await ids(store, states=[JobState.QUEUED]) == [queued.id]
    assert await ids(store, states=[JobState.RUNNING]) == [running.id]
    assert await ids(store, states=[JobState.QUEUED, JobState.CANCELLED]) == [
        queued.id,
        cancelled_job.id,
    ]
    assert await ids(store, states=[JobState.SUCCEEDED]) == []


async def test_listing_filters_by_every_label_given(store: Store) -> None:
    red_web = await submit(store, labels={"team": "red", "tier": "web"})
    blue_web = await submit(store, labels={"team": "blue", "tier": "web"})
    await submit(store, labels={})

    assert await ids(store, labels={"team": "red"}) == [red_web.id]
    assert await ids(store, labels={"tier": "web"}) == [blue_web.id, red_web.id]
    assert await ids(store, labels={"team": "red", "tier": "web"}) == [red_web.id]
    assert await ids(store, labels={"team": "red", "tier": "db"}) == []
    assert await ids(store, labels={"team": "green"}) == []


async def test_listing_filters_by_labels_whose_keys_hold_dots_and_slashes(store: Store) -> None:
    report = await submit(store, labels={"app.kubernetes.io/name": "report"})
    await submit(store, labels={"app.kubernetes.io/name": "backup"})
    await submit(store, labels={"app": "report"})

    assert await ids(store, labels={"app.kubernetes.io/name": "report"}) == [report.id]


async def test_listing_matches_label_values_as_exact_text(store: Store) -> None:
    values = ["123", "true", "null", "", 'say "hi"', "café ☕", "x'y"]
    jobs = {value: await submit(store, labels={"k": value}) for value in values}

    for value, job in jobs.items():
        assert await ids(store, labels={"k": value}) == [job.id], value


async def test_listing_filters_by_name(store: Store) -> None:
    older = await submit(store, name="nightly")
    newer = await submit(store, name="nightly")
    await submit(store, name="hourly")
    await submit(store)

    assert await ids(store, name="nightly") == [newer.id, older.id]
    assert await ids(store, name="weekly") == []


async def test_listing_filters_by_text_in_the_name_in_any_case(store: Store) -> None:
    build = await submit(store, name="Nightly-BUILD")
    test = await submit(store, name="nightly-test")
    odd = await submit(store, name="100%_done")
    await submit(store)

    assert await ids(store, name_contains="build") == [build.id]
    assert await ids(store, name_contains="NIGHTLY") == [test.id, build.id]
    assert await ids(store, name_contains="%_") == [odd.id]  # wildcards are text
    assert await ids(store, name_contains="0_d") == []
    assert await ids(store, name_contains="night", owner="someone else") == []


@pytest.mark.parametrize("count", [6, 7])
async def test_paging_with_the_cursor_lists_every_job_exactly_once(
    store: Store, count: int
) -> None:
    submitted = [(await submit(store, now=T0 + i)).id for i in range(count)]

    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    while True:
        page = await store.list_jobs(limit=3, cursor=cursor)
        seen += [job.id for job in page.jobs]
        sizes.append(len(page.jobs))
        cursor = page.next_cursor
        if cursor is None:
            break
        assert len(sizes) <= count, "paging does not end"

    assert seen == submitted[::-1]
    assert sizes == [3] * (count // 3) + ([count % 3] if count % 3 else [])


async def test_paging_a_filtered_listing_lists_only_matching_jobs(store: Store) -> None:
    submitted = [
        await submit(store, now=T0 + i, labels={"parity": "even" if i % 2 == 0 else "odd"})
        for i in range(10)
    ]
    even = [job.id for job in submitted if job.labels["parity"] == "even"]

    first = await store.list_jobs(labels={"parity": "even"}, limit=2)
    second = await store.list_jobs(labels={"parity": "even"}, limit=2, cursor=first.next_cursor)
    third = await store.list_jobs(labels={"parity": "even"}, limit=2, cursor=second.next_cursor)

    assert [job.id for page in (first, second, third) for job in page.jobs] == even[::-1]
    assert third.next_cursor is None


# -- cancelling ----------------------------------------------------------------


async def test_cancelling_a_queued_job_cancels_it_at_once(store: Store) -> None:
    heard: list[str] = []
    store.events.on_cancel(heard.append)
    job = await submit(store)

    returned = await store.cancel_job(job.id, T0 + 5)

    record = await store.get_job(job.id)
    assert returned == record
    assert record.state is JobState.CANCELLED
    assert record.reason is Reason.CANCELLED
    assert record.finished_at == timestamp(T0 + 5)
    assert record.attempts == []
    assert heard == [], "no worker has anything to stop"
    assert await store.claim_jobs("w1", 10, T0 + 6, LEASE) == []


async def test_a_kill_reaches_the_worker_as_a_kill_by_event_and_heartbeat(store: Store) -> None:
    stops: list[str] = []
    kills: list[str] = []
    store.events.on_cancel(stops.append)
    store.events.on_kill(kills.append)
    job = await submit(store)
    got = await claim(store, worker="w1")

    returned = await store.cancel_job(job.id, T0 + 5, kill=True)

    assert returned.state is JobState.RUNNING and returned.cancel_requested
    assert (kills, stops) == ([job.id], [])
    reply = await store.heartbeat("w1", {job.id: got.attempt}, T0 + 60)
    assert (reply.cancel, reply.kill) == ({job.id}, {job.id})


async def test_cancelling_a_running_job_asks_its_worker_to_stop_it(store: Store) -> None:
    heard: list[str] = []
    store.events.on_cancel(heard.append)
    job = await submit(store)
    got = await claim(store, worker="w1")

    returned = await store.cancel_job(job.id, T0 + 5)

    assert returned.state is JobState.RUNNING, "the worker stops it; the store does not"
    assert returned.cancel_requested
    assert heard == [job.id]
    reply = await store.heartbeat("w1", {job.id: got.attempt}, T0 + 60)
    assert reply.cancel == {job.id}
    assert reply.lost == frozenset()

    await store.finish_attempt(job.id, got.attempt, cancelled(T0 + 7))
    record = await store.get_job(job.id)
    assert (record.state, record.reason, record.signal) == (
        JobState.CANCELLED,
        Reason.CANCELLED,
        15,
    )


async def test_a_job_asked_to_stop_whose_worker_is_lost_ends_cancelled(store: Store) -> None:
    job = await submit(store)
    await claim(store)
    await store.cancel_job(job.id, T0 + 5)

    [lost] = await store.reap_expired(AFTER_LEASE, max_lost=3)

    assert lost.new_state is JobState.CANCELLED
    record = await store.get_job(job.id)
    assert (record.state, record.reason) == (JobState.CANCELLED, Reason.CANCELLED)
    assert await store.claim_jobs("w2", 10, AFTER_LEASE, LEASE) == []


async def _finished(store: Store, state: JobState) -> Job:
    job = await submit(store)
    if state is JobState.CANCELLED:
        await store.cancel_job(job.id, T0 + 1)
    else:
        got = await claim(store)
        await store.finish_attempt(
            job.id, got.attempt, exited(0 if state is JobState.SUCCEEDED else 1)
        )
    record = await store.get_job(job.id)
    assert record.state is state
    return record


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
async def test_cancelling_a_finished_job_is_an_illegal_transition(
    store: Store, state: JobState
) -> None:
    job = await _finished(store, state)

    with pytest.raises(IllegalTransition) as raised:
        await store.cancel_job(job.id, T0 + 20)

    assert (raised.value.job_id, raised.value.state, raised.value.target) == (
        job.id,
        state.value,
        "cancelled",
    )
    assert await store.get_job(job.id) == job


async def test_cancelling_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.cancel_job("0123456789abcdef", T0)


# -- references: an id, a prefix of one, a name ----------------------------------


async def _job(store: Store, job_id: str, name: str | None, owner: str = "alice") -> None:
    spec = JobSpec(command=["true"], name=name)
    await store.create_job(NewJob(job_id, spec, b"", T0, owner))


async def test_a_reference_resolves_to_the_id_prefix_or_name_of_the_owners_jobs(
    store: Store,
) -> None:
    await _job(store, "abcd000000000001", "deploy")
    await _job(store, "abce000000000002", "build")
    await _job(store, "abce100000000003", "build")
    await _job(store, "abcd900000000004", "nightly", owner="bob")

    assert await store.resolve_job("abcd000000000001", "alice") == ["abcd000000000001"]
    assert await store.resolve_job("abcd", "alice") == ["abcd000000000001"]
    assert await store.resolve_job("deploy", "alice") == ["abcd000000000001"]
    assert await store.resolve_job("build", "alice") == ["abce100000000003", "abce000000000002"]
    assert await store.resolve_job("abce", "alice") == ["abce100000000003", "abce000000000002"]
    assert await store.resolve_job("abcd", "bob") == ["abcd900000000004"]
    assert await store.resolve_job("abcd", None) == ["abcd900000000004", "abcd000000000001"]
    for missing in ("abc", "ABCD", "abcd%", "ab_d", "nightly", "abcd900000000004"):
        assert await store.resolve_job(missing, "alice") == [], missing
