"""The Store contract for machine pools: machines recorded through their
states with one conditional write each, listed live (and ended ones since a
time), pools' back-off, and the lease by which one server's autoscaler acts.

Every test runs once per implementation (see conftest.STORES).
"""

from __future__ import annotations

import dataclasses

import sqlalchemy
from store_actions import claim, exited, submit

from conftest import StoreOpener
from jobdock.models.machines import MachineRecord, PoolState
from jobdock.store import Store
from jobdock.store.sql import SqlStore

T0 = 1_700_000_000.0


def machine(machine_id: str = "m-gpu-0001", pool: str = "gpu", at: float = T0) -> MachineRecord:
    return MachineRecord(
        id=machine_id,
        pool=pool,
        state="requested",
        provider_id=None,
        token_id="tok1",
        jobs_done=0,
        requested_at=at,
        booted_at=None,
        last_busy_at=None,
        stopping_at=None,
        stopped_at=None,
        error=None,
        server="api-1",
    )


async def test_a_machine_moves_through_its_states_and_is_listed_as_it_goes(store: Store) -> None:
    await store.add_machine(machine())

    assert await store.update_machine("m-gpu-0001", {"provider_id": "i-1"}, to="booting")
    assert await store.update_machine("m-gpu-0001", {"booted_at": T0 + 5}, to="ready")
    assert await store.update_machine("m-gpu-0001", {"jobs_done": 1, "last_busy_at": T0 + 9})
    [ready] = await store.list_machines()

    assert ready == dataclasses.replace(
        machine(),
        state="ready",
        provider_id="i-1",
        booted_at=T0 + 5,
        jobs_done=1,
        last_busy_at=T0 + 9,
    )


async def test_an_illegal_move_changes_nothing(store: Store) -> None:
    await store.add_machine(machine())
    assert await store.update_machine("m-gpu-0001", {"stopped_at": T0 + 1}, to="stopped")

    went_back = await store.update_machine("m-gpu-0001", {}, to="ready")
    noted = await store.update_machine("m-gpu-0001", {"jobs_done": 3})
    [stopped] = await store.list_machines(since=T0)

    assert (went_back, noted) == (False, False)
    assert (stopped.state, stopped.jobs_done) == ("stopped", 0)


async def test_ended_machines_are_listed_only_since_a_time_newest_first(store: Store) -> None:
    await store.add_machine(machine("m-gpu-0001", at=T0))
    await store.add_machine(machine("m-gpu-0002", at=T0 + 1))
    await store.add_machine(machine("m-cpu-0003", pool="cpu", at=T0 + 2))
    await store.update_machine("m-gpu-0001", {"stopped_at": T0 + 10, "error": "x"}, to="failed")

    live = await store.list_machines()
    recent = await store.list_machines(since=T0 + 10)
    later = await store.list_machines(since=T0 + 11)
    gpu = await store.list_machines("gpu", since=T0)

    assert [m.id for m in live] == ["m-cpu-0003", "m-gpu-0002"]
    assert [m.id for m in recent] == ["m-cpu-0003", "m-gpu-0002", "m-gpu-0001"]
    assert [m.id for m in later] == ["m-cpu-0003", "m-gpu-0002"]
    assert [(m.id, m.state, m.error) for m in gpu] == [
        ("m-gpu-0002", "requested", None),
        ("m-gpu-0001", "failed", "x"),
    ]


async def test_a_machine_row_that_does_not_load_is_skipped(store: Store) -> None:
    await store.add_machine(machine("m-gpu-0001"))
    await store.add_machine(machine("m-gpu-0002", at=T0 + 1))
    assert isinstance(store, SqlStore)
    engine = sqlalchemy.create_engine(store.url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sqlalchemy.text("UPDATE machines SET state = 'lost' WHERE id = 'm-gpu-0001'")
            )
            conn.execute(
                sqlalchemy.text(
                    "INSERT INTO machine_pools (name, failures) VALUES ('gpu', 1), ('bad', 2)"
                )
            )
            conn.execute(sqlalchemy.text("UPDATE machine_pools SET decided_at = NULL"))
    finally:
        engine.dispose()

    listed = await store.list_machines(since=0)

    assert [m.id for m in listed] == ["m-gpu-0002"]
    assert [p.name for p in await store.pool_states()] == ["bad", "gpu"]


async def test_a_pool_state_is_created_then_replaced(store: Store) -> None:
    first = PoolState("gpu", 1, T0 + 2, "boot timeout", "start 1", T0)
    await store.record_pool(first)
    await store.record_pool(dataclasses.replace(first, failures=0, backoff_until=None))

    assert await store.pool_states() == [dataclasses.replace(first, failures=0, backoff_until=None)]


async def test_one_holder_has_a_lease_until_it_expires_or_is_released(
    open_store: StoreOpener,
) -> None:
    one, two = await open_store(), await open_store()

    assert await one.take_lease("autoscaler", "api-1", T0, T0 + 5)
    assert not await two.take_lease("autoscaler", "api-2", T0 + 1, T0 + 6)
    assert await one.take_lease("autoscaler", "api-1", T0 + 2, T0 + 7)
    assert not await two.take_lease("autoscaler", "api-2", T0 + 6, T0 + 11)
    assert await two.take_lease("autoscaler", "api-2", T0 + 8, T0 + 13)
    assert not await one.take_lease("autoscaler", "api-1", T0 + 9, T0 + 14)
    await two.release_lease("autoscaler", "api-2")
    assert await one.take_lease("autoscaler", "api-1", T0 + 10, T0 + 15)


async def test_the_labels_waiting_jobs_require_are_listed_in_claim_order(store: Store) -> None:
    await submit(store, now=T0, requires={"pool": "gpu"})
    await submit(store, now=T0 + 1)
    await submit(store, now=T0 + 2, requires={"pool": "cpu"}, priority=5)
    await submit(store, now=T0 + 3, requires={"pool": "later"}, run_at=T0 + 100)

    assert await store.waiting_requirements(T0 + 10, 10) == [{"pool": "cpu"}, {"pool": "gpu"}]
    assert await store.waiting_requirements(T0 + 10, 1) == [{"pool": "cpu"}]


async def test_a_machines_attempts_are_counted_by_its_agents_prefix(store: Store) -> None:
    for _ in range(3):
        await submit(store)
    first = await claim(store, worker="agent-tok1-host-1")
    await claim(store, worker="agent-tok1-host-1")
    await claim(store, worker="agent-tok2-host-1")
    await store.finish_attempt(first.job_id, first.attempt, exited(0))

    assert await store.machine_attempts("agent-tok1-") == (2, 1, T0 + 5)
    assert await store.machine_attempts("agent-tok3-") == (0, 0, None)
