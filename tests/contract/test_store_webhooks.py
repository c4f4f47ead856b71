"""The store's webhooks, on SQLite and PostgreSQL: a job owes them only
once it has ended; one caller at a time holds them, until its claim runs
out; once sent they are owed no more; every try is kept, in order, and
goes with the job."""

from __future__ import annotations

from datetime import UTC, datetime

from store_actions import T0, claim, exited, submit

from jobdock.models.jobs import WebhookDelivery
from jobdock.store import Store

HOOK = "http://127.0.0.1:9/hook"


def _try(number: int, ok: bool) -> WebhookDelivery:
    return WebhookDelivery(
        url=HOOK,
        try_number=number,
        at=datetime.fromtimestamp(T0 + number, UTC),
        status=200 if ok else None,
        ok=ok,
        error=None if ok else "ConnectError",
        seconds=0.01,
    )


async def test_a_jobs_webhooks_are_owed_once_it_ends_and_held_by_one_caller(
    store: Store,
) -> None:
    job = await submit(store, webhooks=[HOOK])
    without = await submit(store)
    running = await claim(store)
    assert await store.claim_webhooks(T0 + 1, T0 + 60, 10) == [], "not before it ends"

    await store.finish_attempt(job.id, running.attempt, exited(0))
    other = await claim(store)
    await store.finish_attempt(without.id, other.attempt, exited(0))
    first = await store.claim_webhooks(T0 + 10, T0 + 60, 10)
    meanwhile = await store.claim_webhooks(T0 + 20, T0 + 80, 10)
    after_the_claim = await store.claim_webhooks(T0 + 61, T0 + 120, 10)
    await store.webhooks_sent(job.id)
    once_sent = await store.claim_webhooks(T0 + 500, T0 + 600, 10)

    assert first == [job.id], "a job without webhooks owes none"
    assert meanwhile == [], "another caller holds them"
    assert after_the_claim == [job.id], "a claim that ran out is taken over"
    assert once_sent == []


async def test_every_try_is_kept_in_order_and_deleted_with_its_job(store: Store) -> None:
    job = await submit(store, webhooks=[HOOK])
    running = await claim(store)
    await store.finish_attempt(job.id, running.attempt, exited(0))

    for number, ok in ((1, False), (2, False), (3, True)):
        await store.record_delivery(job.id, _try(number, ok))
    log = await store.list_deliveries(job.id)
    await store.delete_job(job.id)

    assert [(d.try_number, d.ok, d.error) for d in log] == [
        (1, False, "ConnectError"),
        (2, False, "ConnectError"),
        (3, True, None),
    ]
    assert log[0].at == datetime.fromtimestamp(T0 + 1, UTC)
    assert await store.list_deliveries(job.id) == []
