"""The Store contract for attempts: claiming, fencing, finishing, heartbeats
and leases, and lost workers.

Every test runs once per implementation (see conftest.STORES). Times are
passed explicitly (``now``, leases), never waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from store_actions import AFTER_LEASE, LEASE, OUT, T0, claim, exited, submit

from jobdock.errors import FencedOff, StoreError
from jobdock.models import AttemptInputs, Job, JobState, Reason, timestamp
from jobdock.store import LogChunk, Outcome, Started, Store

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
    "note_engine": lambda store, job_id, attempt: store.note_engine(
        job_id, attempt, "4242", "PENDING (Resources)"
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


async def test_mark_started_records_what_the_attempt_really_ran(store: Store) -> None:
    job = await submit(store)
    got = await claim(store)
    inputs = AttemptInputs(
        image="localhost/app:1",
        image_digest="localhost/app@sha256:" + "a" * 64,
        image_id="sha256:" + "b" * 64,
        command=["sh", "-c", "true"],
        env=["HOME", "WHO"],
        stdin_bytes=3,
        stdin_sha256="c" * 64,
        limits={"memory": 1 << 20},
        runtime="runsc",
    )

    await store.mark_started(
        job.id, got.attempt, Started(1, 1, "node-1", T0 + 1, inputs.model_dump(mode="json"))
    )

    assert (await store.get_job(job.id)).attempts[0].inputs == inputs


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
