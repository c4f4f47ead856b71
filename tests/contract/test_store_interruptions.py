"""The hand-back of an interrupted machine's attempts (agent_access.py's
hand_back_attempts_of): ended at once as ``interrupted``, their jobs queued
again without spending their retries, their workers stopped, their late
reports refused; a machine lost without notice still spends a retry.

Every test runs once per store implementation (see conftest.STORES), at
fixed times.
"""

from __future__ import annotations

import pytest
from store_actions import LEASE, T0, claim, exited, submit

from jobdock.agent_access import hand_back_attempts_of, lose_attempts_of
from jobdock.errors import FencedOff
from jobdock.models import JobState, Reason
from jobdock.models.records import WorkerInfo
from jobdock.store import Store

#: Would fail the job at its first loss that counts (docs/scheduling.md).
NO_RETRIES = {"max_attempts": 1, "count_worker_lost": True}


async def _running_on(store: Store, worker: str) -> str:
    """A job with no retries, claimed by ``worker`` (registered) at T0."""
    await store.register_worker(WorkerInfo(worker, "box", {}, 4, T0))
    job = await submit(store, retry=NO_RETRIES)
    got = await claim(store, worker=worker, now=T0)
    assert got.job_id == job.id
    return job.id


async def test_a_handed_back_attempt_is_interrupted_and_its_job_queued_with_retries_unspent(
    store: Store,
) -> None:
    job_id = await _running_on(store, "agent-tok1-box-0001")

    handed = await hand_back_attempts_of(store, "agent-tok1-", T0 + 5)

    assert handed == 1
    job = await store.get_job(job_id)
    assert job.state is JobState.QUEUED
    assert job.attempts[0].reason is Reason.INTERRUPTED
    assert job.attempts[0].finished_at is not None
    assert "reclaimed" in (job.message or "")
    # Run again, it may still succeed: the interruption spent nothing.
    again = await claim(store, worker="w2", now=T0 + 6)
    assert again.attempt == 2 and again.failures == 0
    await store.finish_attempt(job_id, 2, exited(0, T0 + 7))
    done = await store.get_job(job_id)
    assert done.state is JobState.SUCCEEDED
    assert [a.reason for a in done.attempts] == [Reason.INTERRUPTED, Reason.EXITED]


async def test_the_interrupted_worker_is_stopped_and_its_late_reports_are_refused(
    store: Store,
) -> None:
    job_id = await _running_on(store, "agent-tok1-box-0001")

    await hand_back_attempts_of(store, "agent-tok1-", T0 + 5)

    workers = {w.id: w for w in await store.list_workers(0.0, T0 - 86400)}
    assert workers["agent-tok1-box-0001"].state == "stopped"
    with pytest.raises(FencedOff):
        await store.finish_attempt(job_id, 1, exited(0, T0 + 6))
    reply = await store.heartbeat("agent-tok1-box-0001", {job_id: 1}, T0 + 6 + LEASE, T0 + 6)
    assert job_id in reply.lost
    assert (await store.get_job(job_id)).state is JobState.QUEUED


async def test_a_hand_back_leaves_other_agents_jobs_running(store: Store) -> None:
    mine = await _running_on(store, "agent-tok1-box-0001")
    theirs = await _running_on(store, "agent-tok2-box-0002")
    local = await _running_on(store, "host-1234")

    assert await hand_back_attempts_of(store, "agent-tok1-", T0 + 5) == 1

    assert (await store.get_job(mine)).state is JobState.QUEUED
    for other in (theirs, local):
        job = await store.get_job(other)
        assert job.state is JobState.RUNNING
        assert job.attempts[-1].reason is None
    workers = {w.id: w.state for w in await store.list_workers(0.0, T0 - 86400)}
    assert workers["agent-tok2-box-0002"] == "alive"


async def test_a_hand_back_with_nothing_running_only_stops_the_worker(store: Store) -> None:
    await store.register_worker(WorkerInfo("agent-tok1-idle-0001", "box", {}, 4, T0))

    assert await hand_back_attempts_of(store, "agent-tok1-", T0 + 5) == 0

    workers = {w.id: w.state for w in await store.list_workers(0.0, T0 - 86400)}
    assert workers["agent-tok1-idle-0001"] == "stopped"


async def test_a_job_that_must_not_run_twice_fails_interrupted(store: Store) -> None:
    await store.register_worker(WorkerInfo("agent-tok1-box-0001", "box", {}, 4, T0))
    job = await submit(store, on_worker_lost="fail")
    await claim(store, worker="agent-tok1-box-0001", now=T0)

    await hand_back_attempts_of(store, "agent-tok1-", T0 + 5)

    failed = await store.get_job(job.id)
    assert failed.state is JobState.FAILED
    assert failed.reason is Reason.INTERRUPTED


async def test_a_machine_lost_without_notice_still_spends_a_retry(store: Store) -> None:
    job_id = await _running_on(store, "agent-tok1-box-0001")

    await lose_attempts_of(store, "agent-tok1-", 5, T0 + 5)

    job = await store.get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.reason is Reason.WORKER_LOST
    assert job.attempts[0].reason is Reason.WORKER_LOST
