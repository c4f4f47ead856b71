"""The Store contract: what the API and the workers rely on, whatever the
database. Every test runs once per implementation (see conftest.STORES).

Times are passed explicitly (``now``, leases), never waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from jobdock.errors import FencedOff, IllegalTransition, JobNotFound, StoreError
from jobdock.logs import LogWriter, read_log
from jobdock.models import ANONYMOUS, Job, JobSpec, JobState, Reason, Stream, timestamp
from jobdock.store import Claim, LogChunk, NewJob, Outcome, Started, Store
from jobdock.submit import new_job_id

T0 = 1_700_000_000.0
LEASE = 30.0
AFTER_LEASE = T0 + LEASE + 1
OUT, ERR = Stream.STDOUT, Stream.STDERR


async def submit(
    store: Store, *, now: float = T0, stdin: bytes = b"", owner: str = ANONYMOUS, **fields: Any
) -> Job:
    spec = JobSpec(**{"command": ["true"], **fields})
    return await store.create_job(NewJob(new_job_id(), spec, stdin, now, owner))


async def claim(store: Store, worker: str = "w1", now: float = T0, lease: float = LEASE) -> Claim:
    claims = await store.claim_jobs(worker, 1, now, lease)
    assert len(claims) == 1, f"expected one job to claim, got {claims}"
    return claims[0]


def exited(code: int, at: float = T0 + 5) -> Outcome:
    return Outcome(
        state=JobState.SUCCEEDED if code == 0 else JobState.FAILED,
        reason=Reason.EXITED,
        message=f"exited with code {code}",
        finished_at=at,
        exit_code=code,
    )


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


# -- claiming --------------------------------------------------------------------


async def test_claiming_takes_the_oldest_queued_jobs_first_and_at_most_limit(
    store: Store,
) -> None:
    oldest = await submit(store, now=T0)
    middle = await submit(store, now=T0 + 1)
    newest = await submit(store, now=T0 + 2)

    first = await store.claim_jobs("w1", 2, T0 + 10, LEASE)
    second = await store.claim_jobs("w1", 5, T0 + 10, LEASE)
    third = await store.claim_jobs("w1", 5, T0 + 10, LEASE)

    assert [(c.job_id, c.attempt) for c in first] == [(oldest.id, 1), (middle.id, 1)]
    assert [(c.job_id, c.attempt) for c in second] == [(newest.id, 1)]
    assert third == []


async def test_a_claim_carries_the_spec_and_the_input_and_marks_the_job_running(
    store: Store,
) -> None:
    data = bytes(range(256)) * 64
    job = await submit(store, command=["cat"], env={"A": "1"}, timeout=5, stdin=data)

    got = await claim(store, worker="worker-7")

    assert got.job_id == job.id
    assert got.attempt == 1
    assert got.spec.command == ["cat"]
    assert got.spec.env == {"A": "1"}
    assert got.spec.timeout == 5.0
    assert got.stdin == data
    running = await store.get_job(job.id)
    assert running.state is JobState.RUNNING
    assert running.attempt == 1
    assert [(a.number, a.worker) for a in running.attempts] == [(1, "worker-7")]


async def test_a_job_without_input_is_claimed_with_empty_input(store: Store) -> None:
    await submit(store)
    assert (await claim(store)).stdin == b""


async def test_each_new_claim_of_a_job_gets_the_next_attempt_number(store: Store) -> None:
    job = await submit(store)

    first = await claim(store, now=T0)
    await store.reap_expired(T0 + LEASE + 1, max_lost=5)
    second = await claim(store, now=T0 + 40)
    await store.release_attempt(job.id, second.attempt, "the worker shut down", T0 + 41)
    third = await claim(store, now=T0 + 42)

    assert [first.attempt, second.attempt, third.attempt] == [1, 2, 3]
    record = await store.get_job(job.id)
    assert record.attempt == 3
    assert [a.number for a in record.attempts] == [1, 2, 3]


async def test_concurrent_claimers_never_get_the_same_job(
    store: Store, open_store: Callable[[], Awaitable[Store]]
) -> None:
    other_server = await open_store()
    submitted = {(await submit(store, now=T0 + i)).id for i in range(20)}

    results = await asyncio.gather(
        store.claim_jobs("a", 8, T0 + 30, LEASE),
        other_server.claim_jobs("b", 8, T0 + 30, LEASE),
        store.claim_jobs("c", 8, T0 + 30, LEASE),
        other_server.claim_jobs("d", 8, T0 + 30, LEASE),
    )

    claimed = [(c.job_id, worker) for worker, cs in zip("abcd", results, strict=True) for c in cs]
    claimed_ids = [job_id for job_id, _ in claimed]
    assert len(claimed_ids) == len(set(claimed_ids)), "a job was claimed twice"
    assert set(claimed_ids) == submitted
    for job_id, worker in claimed:
        record = await store.get_job(job_id)
        assert [(a.number, a.worker) for a in record.attempts] == [(1, worker)]


# -- fencing -------------------------------------------------------------------

STALE_WRITES: dict[str, Callable[[Store, str, int], Awaitable[None]]] = {
    "append_logs": lambda store, job_id, attempt: store.append_logs(
        job_id, attempt, [LogChunk(1, OUT, 0, 0, b"late output\n")]
    ),
    "mark_started": lambda store, job_id, attempt: store.mark_started(
        job_id, attempt, Started(pid=4242, pid_start=1, host="old-host", started_at=T0 + 50)
    ),
    "finish_attempt": lambda store, job_id, attempt: store.finish_attempt(
        job_id, attempt, exited(0, at=T0 + 50)
    ),
}


@pytest.mark.parametrize("write", sorted(STALE_WRITES))
async def test_an_attempt_that_lost_the_job_can_write_nothing(store: Store, write: str) -> None:
    job = await submit(store)
    stale = await claim(store, worker="w1", now=T0)
    await store.reap_expired(AFTER_LEASE, max_lost=3)
    current = await claim(store, worker="w2", now=AFTER_LEASE)
    before = await store.get_job(job.id)

    with pytest.raises(FencedOff) as raised:
        await STALE_WRITES[write](store, job.id, stale.attempt)

    assert (raised.value.job_id, raised.value.attempt) == (job.id, stale.attempt)
    assert await store.get_job(job.id) == before
    assert (await store.read_logs(job.id, attempt=1, stream=None, offset=0)).chunks == []
    # The attempt that owns the job still writes.
    await store.append_logs(job.id, current.attempt, [LogChunk(1, OUT, 0, 0, b"mine\n")])
    read = await store.read_logs(job.id, attempt=None, stream=None, offset=0)
    assert (read.attempt, [c.data for c in read.chunks]) == (2, [b"mine\n"])


@pytest.mark.parametrize("write", sorted(STALE_WRITES))
async def test_a_finished_attempt_can_write_nothing(store: Store, write: str) -> None:
    job = await submit(store)
    got = await claim(store)
    await store.finish_attempt(job.id, got.attempt, exited(3))
    before = await store.get_job(job.id)

    with pytest.raises(FencedOff):
        await STALE_WRITES[write](store, job.id, got.attempt)

    assert await store.get_job(job.id) == before


async def test_a_refused_write_does_not_undo_writes_made_at_the_same_time(store: Store) -> None:
    job = await submit(store)
    stale = await claim(store, worker="w1", now=T0)
    await store.reap_expired(AFTER_LEASE, max_lost=3)
    current = await claim(store, worker="w2", now=AFTER_LEASE)

    results = await asyncio.gather(
        store.append_logs(job.id, stale.attempt, [LogChunk(1, OUT, 0, 0, b"stale\n")]),
        store.append_logs(job.id, current.attempt, [LogChunk(1, OUT, 0, 0, b"current\n")]),
        submit(store, now=AFTER_LEASE),
        store.cancel_job(job.id, AFTER_LEASE),
        return_exceptions=True,
    )

    assert isinstance(results[0], FencedOff)
    assert isinstance(results[2], Job)
    assert (await store.get_job(results[2].id)).state is JobState.QUEUED
    assert (await store.get_job(job.id)).cancel_requested
    read = await store.read_logs(job.id, attempt=None, stream=None, offset=0)
    assert [c.data for c in read.chunks] == [b"current\n"]


async def test_a_write_that_fails_part_way_changes_nothing(store: Store) -> None:
    job = await submit(store)
    got = await claim(store)
    await store.append_logs(job.id, got.attempt, [LogChunk(1, OUT, 0, 0, b"first\n")])

    # The second write's new chunk 2 is stored before its repeated chunk 1 fails.
    results = await asyncio.gather(
        submit(store),
        store.append_logs(
            job.id,
            got.attempt,
            [LogChunk(2, OUT, 6, 6, b"second\n"), LogChunk(1, OUT, 0, 0, b"first\n")],
        ),
        return_exceptions=True,
    )

    assert isinstance(results[0], Job)
    assert isinstance(results[1], StoreError)
    read = await store.read_logs(job.id, attempt=None, stream=None, offset=0)
    assert [c.data for c in read.chunks] == [b"first\n"]
    assert (await store.get_job(results[0].id)).state is JobState.QUEUED


async def test_mark_started_records_where_the_attempt_runs(store: Store) -> None:
    job = await submit(store)
    got = await claim(store)

    await store.mark_started(
        job.id, got.attempt, Started(pid=4242, pid_start=777, host="node-1", started_at=T0 + 1)
    )

    record = await store.get_job(job.id)
    assert record.state is JobState.RUNNING
    assert record.started_at == timestamp(T0 + 1)
    assert record.attempts[0].pid == 4242
    assert record.attempts[0].started_at == timestamp(T0 + 1)


# -- finishing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(JobState.SUCCEEDED, Reason.EXITED, "exited with code 0", T0 + 9, exit_code=0),
        Outcome(JobState.FAILED, Reason.EXITED, "exited with code 3", T0 + 9, exit_code=3),
        Outcome(JobState.FAILED, Reason.SIGNALED, "killed by signal 9 (SIGKILL)", T0 + 9, signal=9),
    ],
    ids=["exit-0", "exit-3", "signal-9"],
)
async def test_finishing_an_attempt_records_how_it_ended_on_the_job_and_the_attempt(
    store: Store, outcome: Outcome
) -> None:
    job = await submit(store)
    got = await claim(store)
    await store.mark_started(job.id, got.attempt, Started(100, 1, "node-1", T0 + 1))

    await store.finish_attempt(
        job.id,
        got.attempt,
        replace(outcome, stdout_bytes=1234, stderr_bytes=56),
    )

    record = await store.get_job(job.id)
    assert record.state is outcome.state
    assert record.reason is outcome.reason
    assert record.message == outcome.message
    assert (record.exit_code, record.signal) == (outcome.exit_code, outcome.signal)
    assert record.finished_at == timestamp(T0 + 9)
    assert record.started_at == timestamp(T0 + 1)
    [attempt] = record.attempts
    assert attempt.reason is outcome.reason
    assert (attempt.exit_code, attempt.signal) == (outcome.exit_code, outcome.signal)
    assert attempt.message == outcome.message
    assert attempt.finished_at == timestamp(T0 + 9)
    assert (attempt.stdout_bytes, attempt.stderr_bytes) == (1234, 56)
    assert await store.claim_jobs("w2", 10, T0 + 10, LEASE) == [], "a finished job is not rerun"


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


# -- heartbeats and leases -------------------------------------------------------


async def test_a_heartbeat_renews_the_leases_of_the_workers_attempts(store: Store) -> None:
    job = await submit(store)
    got = await claim(store, worker="w1", now=T0, lease=LEASE)

    reply = await store.heartbeat("w1", {job.id: got.attempt}, lease_until=T0 + 100)

    assert reply.lost == frozenset() and reply.cancel == frozenset()
    assert await store.reap_expired(T0 + 99, max_lost=3) == []
    assert (await store.get_job(job.id)).state is JobState.RUNNING
    assert [lost.job_id for lost in await store.reap_expired(T0 + 101, max_lost=3)] == [job.id]


async def test_a_heartbeat_reports_a_finished_attempt_as_no_longer_held(store: Store) -> None:
    finished = await submit(store, now=T0)
    kept = await submit(store, now=T0 + 1)
    [done, mine] = await store.claim_jobs("w1", 2, T0, LEASE)
    await store.finish_attempt(finished.id, done.attempt, exited(0))

    reply = await store.heartbeat(
        "w1", {finished.id: done.attempt, kept.id: mine.attempt}, lease_until=T0 + 100
    )

    assert reply.lost == {finished.id}
    assert reply.cancel == frozenset()


async def test_a_heartbeat_reports_an_attempt_lost_to_another_worker_and_leaves_its_lease(
    store: Store,
) -> None:
    job = await submit(store)
    old = await claim(store, worker="w1", now=T0)
    await store.reap_expired(AFTER_LEASE, max_lost=3)
    new = await claim(store, worker="w2", now=AFTER_LEASE, lease=LEASE)

    reply = await store.heartbeat("w1", {job.id: old.attempt}, lease_until=T0 + 1000)

    assert reply.lost == {job.id}
    # w1's heartbeat did not renew w2's lease: it still expires on time.
    [lost] = await store.reap_expired(AFTER_LEASE + LEASE + 1, max_lost=3)
    assert (lost.job_id, lost.attempt) == (job.id, new.attempt)


# -- lost workers ----------------------------------------------------------------


async def test_an_expired_attempt_is_recorded_as_worker_lost_and_its_job_requeued(
    store: Store,
) -> None:
    job = await submit(store)
    got = await claim(store, now=T0)
    await store.mark_started(job.id, got.attempt, Started(4242, 777, "node-1", T0 + 1))

    lost = await store.reap_expired(AFTER_LEASE, max_lost=3)

    assert [(x.job_id, x.attempt, x.host, x.pid, x.pid_start, x.new_state) for x in lost] == [
        (job.id, 1, "node-1", 4242, 777, JobState.QUEUED)
    ]
    record = await store.get_job(job.id)
    assert record.state is JobState.QUEUED
    assert record.finished_at is None
    [attempt] = record.attempts
    assert attempt.reason is Reason.WORKER_LOST
    assert attempt.finished_at == timestamp(AFTER_LEASE)
    assert (await claim(store, worker="w2", now=AFTER_LEASE)).attempt == 2


async def test_an_expired_attempt_of_a_job_that_must_not_rerun_fails_the_job(
    store: Store,
) -> None:
    job = await submit(store, on_worker_lost="fail")
    await claim(store, now=T0)

    [lost] = await store.reap_expired(AFTER_LEASE, max_lost=3)

    assert lost.new_state is JobState.FAILED
    record = await store.get_job(job.id)
    assert record.state is JobState.FAILED
    assert record.reason is Reason.WORKER_LOST
    assert record.finished_at == timestamp(AFTER_LEASE)
    assert record.message
    assert record.attempts[0].reason is Reason.WORKER_LOST
    assert await store.claim_jobs("w2", 10, AFTER_LEASE, LEASE) == []


@pytest.mark.parametrize("max_lost", [0, 1, 3])
async def test_a_job_is_requeued_at_most_max_lost_times_then_fails(
    store: Store, max_lost: int
) -> None:
    job = await submit(store)
    now = T0
    new_states = []
    for _ in range(max_lost + 1):
        await claim(store, now=now)
        now += LEASE + 1
        [lost] = await store.reap_expired(now, max_lost=max_lost)
        new_states.append(lost.new_state)

    assert new_states == [JobState.QUEUED] * max_lost + [JobState.FAILED]
    record = await store.get_job(job.id)
    assert (record.state, record.reason) == (JobState.FAILED, Reason.WORKER_LOST)
    assert len(record.attempts) == max_lost + 1


async def test_only_attempts_whose_lease_expired_are_reaped(store: Store) -> None:
    short = await submit(store, now=T0)
    long = await submit(store, now=T0 + 1)
    finished = await submit(store, now=T0 + 2)
    queued = await submit(store, now=T0 + 3)
    await claim(store, now=T0, lease=10)
    await claim(store, now=T0, lease=100)
    done = await claim(store, now=T0, lease=10)
    await store.finish_attempt(finished.id, done.attempt, exited(0, at=T0 + 5))

    assert await store.reap_expired(T0 + 9, max_lost=3) == [], "no lease has expired yet"
    reaped = await store.reap_expired(T0 + 50, max_lost=3)

    assert [lost.job_id for lost in reaped] == [short.id]
    assert (await store.get_job(long.id)).state is JobState.RUNNING
    assert (await store.get_job(finished.id)).state is JobState.SUCCEEDED
    assert (await store.get_job(queued.id)).state is JobState.QUEUED


async def test_releasing_an_attempt_requeues_the_job_without_counting_it_as_lost(
    store: Store,
) -> None:
    job = await submit(store)
    now = T0
    for _ in range(3):
        got = await claim(store, now=now)
        await store.release_attempt(job.id, got.attempt, "the worker shut down", now + 1)
        record = await store.get_job(job.id)
        assert record.state is JobState.QUEUED
        assert record.attempts[-1].reason is Reason.WORKER_LOST
        assert record.attempts[-1].message == "the worker shut down"
        now += 2

    # With max_lost=1 one real loss is still forgiven: the releases did not count.
    await claim(store, now=now)
    [first_loss] = await store.reap_expired(now + LEASE + 1, max_lost=1)
    await claim(store, now=now + LEASE + 2)
    [second_loss] = await store.reap_expired(now + 2 * LEASE + 3, max_lost=1)

    assert first_loss.new_state is JobState.QUEUED
    assert second_loss.new_state is JobState.FAILED
    assert (await store.get_job(job.id)).attempt == 5


# -- logs ------------------------------------------------------------------------

#: Output of one attempt, in two batches, as LogWriter stores it:
#:   seq 1 stdout "hello "    stdout 0..6   merged 0..6
#:   seq 2 stderr "warning\n" stderr 0..8   merged 6..14
#:   seq 3 stdout "world\n"   stdout 6..12  merged 14..20
#:   seq 4 stderr "done\n"    stderr 8..13  merged 20..25
BATCHES = [
    [(OUT, b"hello "), (ERR, b"warning\n"), (OUT, b"world\n")],
    [(ERR, b"done\n")],
]


async def running_job_with_output(store: Store) -> tuple[Job, Claim]:
    job = await submit(store)
    got = await claim(store)
    writer = LogWriter(store, job.id, got.attempt)
    for batch in BATCHES:
        await store.append_logs(job.id, got.attempt, writer.chunks(batch))
    return job, got


def described(chunks: list[LogChunk]) -> list[tuple[int, Stream, int, int, bytes]]:
    return [(c.seq, c.stream, c.offset, c.merged_offset, c.data) for c in chunks]


async def test_log_chunks_read_back_in_order_with_offsets_per_stream_and_merged(
    store: Store,
) -> None:
    job, _ = await running_job_with_output(store)

    merged = await store.read_logs(job.id, attempt=None, stream=None, offset=0, limit=100)
    stdout = await store.read_logs(job.id, attempt=None, stream=OUT, offset=0, limit=100)
    stderr = await store.read_logs(job.id, attempt=None, stream=ERR, offset=0, limit=100)

    assert merged.attempt == 1
    assert described(merged.chunks) == [
        (1, OUT, 0, 0, b"hello "),
        (2, ERR, 0, 6, b"warning\n"),
        (3, OUT, 6, 14, b"world\n"),
        (4, ERR, 8, 20, b"done\n"),
    ]
    assert described(stdout.chunks) == [(1, OUT, 0, 0, b"hello "), (3, OUT, 6, 14, b"world\n")]
    assert described(stderr.chunks) == [(2, ERR, 0, 6, b"warning\n"), (4, ERR, 8, 20, b"done\n")]


async def test_reading_logs_from_an_offset_starts_at_the_chunk_holding_it(store: Store) -> None:
    job, _ = await running_job_with_output(store)

    async def seqs(stream: Stream | None, offset: int) -> list[int]:
        read = await store.read_logs(job.id, attempt=None, stream=stream, offset=offset)
        return [c.seq for c in read.chunks]

    assert await seqs(OUT, 6) == [3]
    assert await seqs(OUT, 5) == [1, 3]
    assert await seqs(OUT, 12) == []
    assert await seqs(ERR, 10) == [4]
    assert await seqs(None, 14) == [3, 4]
    assert await seqs(None, 13) == [2, 3, 4]
    assert await seqs(None, 25) == []


async def test_reading_logs_returns_at_most_limit_chunks(store: Store) -> None:
    job, _ = await running_job_with_output(store)

    first = await store.read_logs(job.id, attempt=None, stream=None, offset=0, limit=3)
    end = first.chunks[-1].merged_offset + len(first.chunks[-1].data)
    rest = await store.read_logs(job.id, attempt=None, stream=None, offset=end, limit=3)

    assert [c.seq for c in first.chunks] == [1, 2, 3]
    assert [c.seq for c in rest.chunks] == [4]


async def test_read_log_from_an_offset_inside_a_chunk_starts_at_that_byte(store: Store) -> None:
    job, _ = await running_job_with_output(store)

    stdout = [c async for c in read_log(store, job.id, stream=OUT, offset=3)]
    merged = [c async for c in read_log(store, job.id, offset=10)]

    assert b"".join(c.data for c in stdout) == b"lo world\n"
    assert stdout[0].offset == 3
    assert b"".join(c.data for c in merged) == b"ing\nworld\ndone\n"
    assert merged[0].merged_offset == 10
    assert [c.stream for c in merged] == [ERR, OUT, ERR]


async def test_logs_are_not_done_while_the_attempt_runs_and_done_once_it_finished(
    store: Store,
) -> None:
    job, got = await running_job_with_output(store)

    while_running = await store.read_logs(job.id, attempt=None, stream=None, offset=25)
    await store.finish_attempt(job.id, got.attempt, exited(0))
    after = await store.read_logs(job.id, attempt=None, stream=None, offset=25)

    assert (while_running.chunks, while_running.done) == ([], False)
    assert (after.chunks, after.done) == ([], True)


async def test_a_job_that_never_started_has_no_logs_and_is_done_only_when_finished(
    store: Store,
) -> None:
    waiting = await submit(store)
    dropped = await submit(store)
    await store.cancel_job(dropped.id, T0 + 1)

    queued_read = await store.read_logs(waiting.id, attempt=None, stream=None, offset=0)
    cancelled_read = await store.read_logs(dropped.id, attempt=None, stream=None, offset=0)

    assert (queued_read.chunks, queued_read.done) == ([], False)
    assert (cancelled_read.chunks, cancelled_read.done) == ([], True)


async def test_logs_of_an_earlier_attempt_stay_readable_after_the_job_is_rerun(
    store: Store,
) -> None:
    job, _ = await running_job_with_output(store)
    await store.reap_expired(AFTER_LEASE, max_lost=3)
    second = await claim(store, worker="w2", now=AFTER_LEASE)
    await store.append_logs(job.id, second.attempt, [LogChunk(1, OUT, 0, 0, b"again\n")])

    earlier = await store.read_logs(job.id, attempt=1, stream=None, offset=0, limit=100)
    latest = await store.read_logs(job.id, attempt=None, stream=None, offset=0, limit=100)

    assert (earlier.attempt, len(earlier.chunks), earlier.done) == (1, 4, True)
    assert (latest.attempt, [c.data for c in latest.chunks], latest.done) == (
        2,
        [b"again\n"],
        False,
    )


async def test_a_follower_gets_output_as_it_is_stored_and_stops_when_the_attempt_ends(
    store: Store,
) -> None:
    job = await submit(store)
    got = await claim(store)
    writer = LogWriter(store, job.id, got.attempt)

    async def follow() -> bytes:
        # A poll far longer than the test: only the store's change events wake it.
        chunks = read_log(store, job.id, follow=True, poll_seconds=3600)
        return b"".join([c.data async for c in chunks])

    follower = asyncio.create_task(follow())
    for batch in BATCHES:
        await store.append_logs(job.id, got.attempt, writer.chunks(batch))
    await store.finish_attempt(job.id, got.attempt, exited(0))

    assert await asyncio.wait_for(follower, 10) == b"hello warning\nworld\ndone\n"


async def _write_attempt(store: Store, job_id: str, claimed: Claim, data: bytes) -> None:
    writer = LogWriter(store, job_id, claimed.attempt)
    await store.append_logs(job_id, claimed.attempt, writer.chunks([(Stream.STDOUT, data)]))


async def _lose_and_run_again(store: Store, job_id: str) -> None:
    """The first attempt (leased until T0 + 10) is lost; a second one writes
    "second try" and succeeds."""
    [lost] = await store.reap_expired(T0 + 11, max_lost=3)
    assert lost.new_state is JobState.QUEUED
    second = await claim(store, worker="w2", now=T0 + 12)
    await _write_attempt(store, job_id, second, b"second try\n")
    await store.finish_attempt(job_id, second.attempt, exited(0, T0 + 13))


async def test_a_follower_of_a_job_goes_on_with_its_next_attempt_when_the_first_is_lost(
    store: Store,
) -> None:
    job = await submit(store)
    await _write_attempt(
        store, job.id, await claim(store, worker="w1", now=T0, lease=10), b"first try\n"
    )

    # Both followers have read the first attempt's output before it is lost
    # (a follower that starts after the rerun reads the latest attempt only).
    latest = read_log(store, job.id, follow=True, poll_seconds=3600)
    pinned = read_log(store, job.id, follow=True, poll_seconds=3600, attempt=1)
    assert (await latest.__anext__()).data == b"first try\n"
    assert (await pinned.__anext__()).data == b"first try\n"

    async def rest(chunks: AsyncIterator[LogChunk]) -> bytes:
        return b"".join([c.data async for c in chunks])

    latest_rest = asyncio.create_task(rest(latest))
    pinned_rest = asyncio.create_task(rest(pinned))
    await _lose_and_run_again(store, job.id)

    assert await asyncio.wait_for(latest_rest, 10) == b"second try\n"
    assert await asyncio.wait_for(pinned_rest, 10) == b""


async def test_a_follower_that_lags_behind_a_rerun_job_still_gets_its_last_attempt(
    store: Store,
) -> None:
    job = await submit(store)
    await _write_attempt(
        store, job.id, await claim(store, worker="w1", now=T0, lease=10), b"first try\n"
    )
    follower = read_log(store, job.id, follow=True, poll_seconds=3600)
    assert (await follower.__anext__()).data == b"first try\n"

    # While the follower has not looked again, the job is lost, run again and finished.
    await _lose_and_run_again(store, job.id)

    rest = [chunk.data async for chunk in follower]
    assert b"".join(rest) == b"second try\n"


async def test_reading_the_logs_of_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.read_logs("0123456789abcdef", attempt=None, stream=None, offset=0)
    with pytest.raises(JobNotFound):
        [c async for c in read_log(store, "0123456789abcdef")]
