"""The Store contract for metrics (docs/metrics.md): counts and histograms
read in one aggregate query each, the same on every store."""

from __future__ import annotations

from test_store import T0, claim, exited, submit

from jobdock.store import Store
from jobdock.store.protocol import BUCKETS, Started


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
