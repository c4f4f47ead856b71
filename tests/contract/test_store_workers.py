"""The Store contract for workers: registered when they start, alive while
they beat, lost when silent, stopped when they unregister, each listed with
the jobs it runs.

Every test runs once per implementation (see conftest.STORES). Times are
passed explicitly (``now``, leases), never waited for.
"""

from __future__ import annotations

from store_actions import LEASE, T0, claim, submit

from jobdock.models import timestamp
from jobdock.models.records import WorkerInfo
from jobdock.store import Store


def worker(worker_id: str = "w1", started_at: float = T0) -> WorkerInfo:
    return WorkerInfo(worker_id, "node-1", {"gpu": "yes"}, 4, started_at)


async def test_a_registered_worker_is_listed_alive_with_the_jobs_it_runs(store: Store) -> None:
    await store.register_worker(worker())
    job = await submit(store)
    await claim(store, worker="w1")

    [listed] = await store.list_workers(since=T0 - 1, lost_before=T0 - 1)

    assert (listed.id, listed.host, listed.labels, listed.concurrency) == (
        "w1",
        "node-1",
        {"gpu": "yes"},
        4,
    )
    assert listed.state == "alive"
    assert listed.started_at == timestamp(T0)
    assert (listed.running, listed.busy) == ([job.id], 1)


async def test_a_silent_worker_is_lost_until_its_next_heartbeat(store: Store) -> None:
    await store.register_worker(worker())

    [silent] = await store.list_workers(since=T0 - 1, lost_before=T0 + 10)
    await store.heartbeat("w1", {}, T0 + 20 + LEASE, now=T0 + 20)
    [beating] = await store.list_workers(since=T0 - 1, lost_before=T0 + 10)

    assert silent.state == "lost"
    assert beating.state == "alive"
    assert beating.heartbeat_at == timestamp(T0 + 20)


async def test_a_stopped_worker_is_listed_stopped_then_not_at_all(store: Store) -> None:
    await store.register_worker(worker())
    await store.unregister_worker("w1", T0 + 5)

    [stopped] = await store.list_workers(since=T0, lost_before=T0 - 1)

    assert stopped.state == "stopped"
    assert stopped.stopped_at == timestamp(T0 + 5)
    assert await store.list_workers(since=T0 + 6, lost_before=T0 - 1) == []


async def test_registering_again_replaces_the_worker_of_that_id(store: Store) -> None:
    await store.register_worker(worker())
    await store.unregister_worker("w1", T0 + 5)
    await store.register_worker(worker(started_at=T0 + 10))

    [listed] = await store.list_workers(since=T0, lost_before=T0 - 1)

    assert listed.state == "alive"
    assert listed.started_at == timestamp(T0 + 10)


async def test_an_owners_listing_shows_only_their_jobs_but_counts_all(store: Store) -> None:
    await store.register_worker(worker())
    mine = await submit(store, owner="alice")
    await submit(store, owner="bob", now=T0 + 1)
    await store.claim_jobs("w1", 2, T0 + 2, LEASE)

    [listed] = await store.list_workers(since=T0 - 1, lost_before=T0 - 1, owner="alice")

    assert (listed.running, listed.busy) == ([mine.id], 2)


async def test_wanted_labels_are_the_checked_keys_claimable_queued_jobs_require(
    store: Store,
) -> None:
    offered = {"port": "8887", "gpu": "yes", "zone": "a"}
    assert await store.wanted_labels(["port", "gpu"], offered, T0) == set()
    await submit(store, requires={"port": "8887"})
    # Not claimable by this worker: it needs a zone the worker lacks.
    await submit(store, requires={"gpu": "yes", "zone": "b"})
    # Past its queue deadline.
    await submit(store, requires={"gpu": "yes"}, queue_timeout=1)

    assert await store.wanted_labels(["port", "gpu"], offered, T0 + 5) == {"port"}
    assert await store.wanted_labels(["gpu"], offered, T0 + 5) == set()
    assert await store.wanted_labels(["port", "gpu"], offered, T0) == {"port", "gpu"}
    [claimed] = await store.claim_jobs("w1", 10, T0 + 5, LEASE, offered)
    assert claimed.spec.requires == {"port": "8887"}
    assert await store.wanted_labels(["port", "gpu"], offered, T0 + 5) == set()
