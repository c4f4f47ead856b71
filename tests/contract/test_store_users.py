"""The Store contract for users' things: job owners, API tokens, secrets and
the audit log; once per implementation (see conftest.STORES)."""

from __future__ import annotations

import asyncio

import pytest

from conftest import StoreOpener
from jobdock.auth import create_token, hash_matches, token_id_of
from jobdock.errors import SecretNotFound, StoreError, TokenNotFound
from jobdock.models import JobSpec
from jobdock.store import NewJob, Store
from jobdock.submit import new_job_id

T0 = 1_700_000_000.0


async def submit(store: Store, owner: str, **fields: object) -> str:
    spec = JobSpec.model_validate({"command": ["true"], **fields})
    job = await store.create_job(NewJob(new_job_id(), spec, b"", T0, owner))
    return job.id


async def test_a_job_keeps_its_owner_and_lists_filter_by_owner(store: Store) -> None:
    hers, his = await submit(store, "alice"), await submit(store, "bob")
    assert (await store.get_job(hers)).owner == "alice"
    assert [j.id for j in (await store.list_jobs(owner="bob")).jobs] == [his]
    assert {j.id for j in (await store.list_jobs()).jobs} == {hers, his}


async def test_a_token_is_found_by_id_checked_by_hash_and_revoked(store: Store) -> None:
    made = await create_token(store, "alice", admin=True, expires_in=60, actor="root")
    token_id = token_id_of(made.token)
    assert token_id == made.info.id
    stored = await store.find_token(token_id)
    assert stored is not None and stored.info.user == "alice" and stored.info.admin
    assert made.token not in stored.hash and hash_matches(made.token, stored.hash)
    assert stored.info.expires_at is not None
    await store.revoke_token(token_id, T0, "root")
    await store.revoke_token(token_id, T0 + 1, "root")
    revoked = await store.find_token(token_id)
    assert revoked is not None and revoked.info.revoked_at is not None
    assert revoked.info.revoked_at.timestamp() == T0
    assert [t.id for t in await store.list_tokens()] == [token_id]
    with pytest.raises(TokenNotFound):
        await store.revoke_token("000000000000", T0, "root")
    assert await store.find_token("000000000000") is None


async def test_secrets_belong_to_their_owner(store: Store) -> None:
    await store.set_secret("alice", "db", b"v1", T0)
    await store.set_secret("alice", "db", b"v2", T0 + 1)
    await store.set_secret("bob", "db", b"bobs", T0)
    assert await store.list_secrets("alice") == [("db", T0, T0 + 1)]
    assert await store.secret_names("alice", ["db", "other"]) == {"db"}
    hers = await submit(store, "alice")
    assert await store.job_secrets(hers, ["db"]) == {"db": b"v2"}
    his = await submit(store, "carol")
    assert await store.job_secrets(his, ["db"]) == {}
    await store.delete_secret("alice", "db", T0 + 2)
    assert await store.list_secrets("alice") == []
    with pytest.raises(SecretNotFound):
        await store.delete_secret("alice", "db", T0 + 3)
    assert await store.list_secrets("bob") == [("db", T0, T0)]


async def test_the_audit_log_records_submits_cancels_and_changes(store: Store) -> None:
    job_id = await submit(store, "alice")
    await store.cancel_job(job_id, T0 + 1, actor="root")
    await store.set_secret("alice", "db", b"x", T0 + 2)
    first = await store.list_audit(limit=2)
    assert [(e.actor, e.action, e.target) for e in first.entries] == [
        ("alice", "secret.set", "db"),
        ("root", "cancel", job_id),
    ]
    assert first.next_cursor is not None
    rest = await store.list_audit(limit=2, cursor=first.next_cursor)
    assert [(e.actor, e.action, e.target) for e in rest.entries] == [("alice", "submit", job_id)]
    assert rest.next_cursor is None


async def test_each_owner_gets_one_uid_of_the_range_for_good(open_store: StoreOpener) -> None:
    # Two stores on one database: two workers allocating at once.
    first, second = await open_store(), await open_store()
    owners = [f"user{n}" for n in range(12)]
    uids = await asyncio.gather(
        *(store.job_uid(owner, 200_000, 200_011) for owner in owners for store in (first, second))
    )
    mine = dict(zip([o for o in owners for _ in (1, 2)], uids, strict=True))
    assert sorted(mine.values()) == list(range(200_000, 200_012))
    assert uids[0::2] == uids[1::2]  # each owner got the same uid from both
    assert await second.job_uid("user3", 200_000, 200_011) == mine["user3"]
    with pytest.raises(StoreError, match="no uid is left"):
        await first.job_uid("one-too-many", 200_000, 200_011)
    # A wider range later: old owners keep theirs, new ones get new uids.
    assert await first.job_uid("user0", 200_000, 200_099) == mine["user0"]
    assert await first.job_uid("one-too-many", 200_000, 200_099) == 200_012
