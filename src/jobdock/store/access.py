"""The SQL of users' things: API tokens, secrets and the audit log.

Like ``store/jobs.py`` and its siblings, one function per operation on a SQLAlchemy
``Connection`` inside a transaction. Secret values arrive here already
encrypted; the store never sees a plaintext secret or a token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, insert, select, update

from jobdock.errors import SecretNotFound, TokenNotFound
from jobdock.models import AuditEntry, AuditPage, StoredToken, TokenInfo, timestamp
from jobdock.store.prepared import Prepared
from jobdock.store.schema import api_tokens, audit_log, jobs, user_secrets

# -- audit -----------------------------------------------------------------------

_RECORD = Prepared(
    lambda _: insert(audit_log).values(
        at=bindparam("at"),
        actor=bindparam("actor"),
        action=bindparam("action"),
        target=bindparam("target"),
    )
)


def record(conn: Connection, at: float, actor: str, action: str, target: str) -> None:
    """Add an entry to the audit log, in the caller's transaction."""
    _RECORD.run(conn, at=at, actor=actor, action=action, target=target)


def list_audit(conn: Connection, limit: int, cursor: str | None) -> AuditPage:
    query = select(audit_log)
    if cursor:
        query = query.where(audit_log.c.seq < int(cursor))
    rows = conn.execute(query.order_by(audit_log.c.seq.desc()).limit(limit + 1)).all()
    entries = [
        AuditEntry(
            seq=row.seq, at=timestamp(row.at), actor=row.actor, action=row.action, target=row.target
        )
        for row in rows[:limit]
    ]
    return AuditPage(
        entries=entries, next_cursor=str(rows[limit - 1].seq) if len(rows) > limit else None
    )


# -- tokens ----------------------------------------------------------------------


def _token_info(row: Row[Any]) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=row.user_name,
        admin=bool(row.admin),
        created_at=timestamp(row.created_at),
        expires_at=timestamp(row.expires_at),
        revoked_at=timestamp(row.revoked_at),
        submit_rate=row.submit_rate,
        submit_burst=row.submit_burst,
        agent=bool(row.agent),
    )


def create_token(conn: Connection, info: TokenInfo, token_hash: str) -> None:
    conn.execute(
        insert(api_tokens).values(
            id=info.id,
            user_name=info.user,
            admin=info.admin,
            agent=info.agent,
            hash=token_hash,
            created_at=info.created_at.timestamp(),
            expires_at=info.expires_at.timestamp() if info.expires_at else None,
            submit_rate=info.submit_rate,
            submit_burst=info.submit_burst,
        )
    )


_FIND_TOKEN = Prepared(lambda _: select(api_tokens).where(api_tokens.c.id == bindparam("id")))


def find_token(conn: Connection, token_id: str) -> StoredToken | None:
    row = _FIND_TOKEN.run(conn, id=token_id).first()
    return None if row is None else StoredToken(info=_token_info(row), hash=row.hash)


def list_tokens(conn: Connection) -> list[TokenInfo]:
    rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).all()
    return [_token_info(row) for row in rows]


def revoke_token(conn: Connection, token_id: str, now: float) -> None:
    """Revoke a token; revoking it again keeps the first time. TokenNotFound."""
    done = conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    if not done and find_token(conn, token_id) is None:
        raise TokenNotFound(token_id)


# -- secrets ---------------------------------------------------------------------


def set_secret(conn: Connection, owner: str, name: str, value: bytes, now: float) -> None:
    """Create or replace one of ``owner``'s secrets (``value`` is encrypted)."""
    mine = and_(user_secrets.c.owner == owner, user_secrets.c.name == name)
    if not conn.execute(
        update(user_secrets).where(mine).values(value=value, updated_at=now)
    ).rowcount:
        conn.execute(
            insert(user_secrets).values(
                owner=owner, name=name, value=value, created_at=now, updated_at=now
            )
        )
    record(conn, now, owner, "secret.set", name)


def delete_secret(conn: Connection, owner: str, name: str, now: float) -> None:
    mine = and_(user_secrets.c.owner == owner, user_secrets.c.name == name)
    if not conn.execute(delete(user_secrets).where(mine)).rowcount:
        raise SecretNotFound(name)
    record(conn, now, owner, "secret.rm", name)


def list_secrets(conn: Connection, owner: str) -> list[tuple[str, float, float]]:
    """(name, created_at, updated_at) of each of ``owner``'s secrets, by name."""
    rows = conn.execute(
        select(user_secrets.c.name, user_secrets.c.created_at, user_secrets.c.updated_at)
        .where(user_secrets.c.owner == owner)
        .order_by(user_secrets.c.name)
    ).all()
    return [(row.name, row.created_at, row.updated_at) for row in rows]


def secret_names(conn: Connection, owner: str, names: Sequence[str]) -> set[str]:
    """Those of ``names`` that ``owner`` has secrets for."""
    rows = conn.execute(
        select(user_secrets.c.name).where(
            user_secrets.c.owner == owner, user_secrets.c.name.in_(list(names))
        )
    ).all()
    return {row.name for row in rows}


def job_secrets(conn: Connection, job_id: str, names: Sequence[str]) -> dict[str, bytes]:
    """The encrypted values of the named secrets of the job's owner: a job
    can reach no one else's secrets."""
    rows = conn.execute(
        select(user_secrets.c.name, user_secrets.c.value)
        .join(jobs, jobs.c.owner == user_secrets.c.owner)
        .where(jobs.c.id == job_id, user_secrets.c.name.in_(list(names)))
    ).all()
    return {row.name: bytes(row.value) for row in rows}
