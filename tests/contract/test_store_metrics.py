"""The Store contract for metrics (docs/metrics.md): counts and histograms
read in one aggregate query each, the same on every store."""

from __future__ import annotations

from collections import Counter
from typing import Any

from store_actions import LEASE, T0, claim, exited, submit

from jobdock.models import JobState
from jobdock.models.records import BUCKETS, Started, StoreMetrics
from jobdock.store import Store


async def test_jobs_are_counted_by_state_reason_runtime_and_label(store: Store) -> None:
    for code in (0, 0, 1):
        await submit(store, labels={"team": "a"})
        attempt = await claim(store, now=T0 + 2)
        await store.mark_started(attempt.job_id, 1, Started(1, None, "h", T0 + 2))
        await store.finish_attempt(attempt.job_id, 1, exited(code, at=T0 + 3))
    await submit(store, labels={"team": "b"})
    await submit(store, image="busybox:1")

    found = await store.metrics(["team"])

    counts = {(c.state, c.reason, c.runtime, c.labels): (c.jobs, c.started) for c in found.jobs}
    assert counts == {
        ("succeeded", "exited", "process", ("a",)): (2, 2),
        ("failed", "exited", "process", ("a",)): (1, 1),
        ("queued", None, "process", ("b",)): (1, 0),
        ("queued", None, "container", ("",)): (1, 0),
    }
    assert found.attempts == {"exited": 3}
    assert found.retries == 0
    # Each waited 2 s from submission to start and ran 1 s.
    assert found.queue_wait.count == 3
    assert found.queue_wait.sum == 6.0
    assert found.queue_wait.buckets == tuple(3 if bound >= 2 else 0 for bound in BUCKETS)
    assert found.run_duration.count == 3
    assert found.run_duration.buckets == tuple(3 if bound >= 1 else 0 for bound in BUCKETS)


async def test_an_empty_store_has_nothing_to_count(store: Store) -> None:
    found = await store.metrics(["team"])
    assert found.jobs == []
    assert found.attempts == {}
    assert found.queue_wait.count == 0
    assert found.run_duration.sum == 0.0


def counters(found: StoreMetrics) -> dict[str, Any]:
    """What the counters and histograms of a scrape show (the gauge aside)."""
    jobs: Counter[tuple[Any, ...]] = Counter()
    for count in (*found.jobs, *found.deleted):
        jobs[("submitted", count.runtime, count.labels)] += count.jobs
        jobs[("started", count.runtime, count.labels)] += count.started
        if JobState(count.state).terminal:
            jobs[(count.state, count.reason or "", count.runtime, count.labels)] += count.jobs
    return {
        "jobs": +jobs,
        "attempts": found.attempts,
        "retries": found.retries,
        "queue_wait": found.queue_wait,
        "run_duration": found.run_duration,
    }


async def run(store: Store, code: int, start: float, **fields: Any) -> None:
    job = await submit(store, now=start - 2, **fields)
    attempt = await claim(store, now=start)
    await store.mark_started(job.id, attempt.attempt, Started(1, None, "h", start))
    await store.finish_attempt(job.id, attempt.attempt, exited(code, at=start + 1))


async def test_pruning_jobs_lowers_no_counter_or_histogram_only_the_gauge(store: Store) -> None:
    for code in (0, 0, 1):
        await run(store, code, T0 + 2, labels={"team": "a", "env": "prod"})
    await run(store, 0, T0 + 5, labels={"team": "b"})
    # A job retried after its worker was lost: two attempts.
    retried = await submit(store, labels={"team": "a"})
    await claim(store, now=T0)
    await store.reap_expired(T0 + LEASE + 1, max_lost=5)
    again = await claim(store, now=T0 + 40)
    await store.finish_attempt(retried.id, again.attempt, exited(0, at=T0 + 50))
    cancelled = await submit(store, image="busybox:1", labels={"team": "b"})
    await store.cancel_job(cancelled.id, T0 + 3)
    await submit(store, labels={"team": "c"})
    # The tally must allow any choice of labels at a later scrape.
    choices: list[list[str]] = [["team"], [], ["env", "team"], ["nope"]]
    before = {tuple(keys): await store.metrics(keys) for keys in choices}
    assert before[("team",)].retries == 1
    assert before[("team",)].deleted == []

    # Two prunes, so that the tally adds to what it already holds.
    assert await store.prune(T0 + 100, keep_default=None, older_than=96) == 4
    assert await store.prune(T0 + 3700, keep_default=None, older_than=60) == 2

    for keys in choices:
        after = await store.metrics(keys)
        assert counters(after) == counters(before[tuple(keys)]), keys
    after = await store.metrics(["team"])
    assert [(c.state, c.labels, c.jobs) for c in after.jobs] == [("queued", ("c",), 1)]
    assert after.attempts == {"exited": 5, "worker_lost": 1}
    assert after.queue_wait.buckets == tuple(4 if bound >= 2 else 0 for bound in BUCKETS)
