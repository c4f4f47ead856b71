"""The SQL of job identities: the uid each owner's process jobs run as.

An owner's uid is allocated once, from the configured range, and never
changes. Every worker sharing the store may allocate at the same moment:
the table's primary key (owner) and unique uid make a second insert of
either a no-op (``ON CONFLICT DO NOTHING``), and the allocation then reads
again and tries the next free uid, so that two owners never share a uid and
an owner never gets two.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from jobdock.errors import StoreError
from jobdock.store.schema import job_identities

#: How many times a lost race for a uid is retried.
ATTEMPTS = 64


def job_uid(conn: Connection, owner: str, low: int, high: int) -> int:
    """The uid of ``owner``'s jobs, allocated from ``low``..``high`` the
    first time; raises StoreError when the range is used up."""
    table = job_identities
    make = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for _ in range(ATTEMPTS):
        uid = conn.execute(select(table.c.uid).where(table.c.owner == owner)).scalar()
        if uid is not None:
            return int(uid)
        candidate = _free_uid(conn, low, high)
        if candidate is None:
            raise StoreError(
                f"no uid is left for the jobs of {owner!r}: every uid of job_uids "
                f"({low}-{high}) belongs to another owner"
            )
        inserted = conn.execute(
            make(table).values(owner=owner, uid=candidate).on_conflict_do_nothing()
        )
        if inserted.rowcount == 1:
            return candidate
    raise StoreError(f"could not allocate a uid for the jobs of {owner!r} (too many races)")


def _free_uid(conn: Connection, low: int, high: int) -> int | None:
    """The uid after the highest one taken in the range, or else the lowest
    gap (after a range was widened downwards, or uids were freed)."""
    in_range = job_identities.c.uid.between(low, high)
    top = conn.execute(select(func.max(job_identities.c.uid)).where(in_range)).scalar()
    if top is None:
        return low
    if top < high:
        return int(top) + 1
    taken = set(conn.execute(select(job_identities.c.uid).where(in_range)).scalars())
    return next((uid for uid in range(low, high + 1) if uid not in taken), None)
