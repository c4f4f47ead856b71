"""What the statements of every operation module share: named parameters,
the fence on the attempt that holds a job, and the announcements a
transaction sends to other processes when it commits.

Imports SQLAlchemy, the models and the schema only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam

from jobdock.models import JobState
from jobdock.store.schema import jobs

#: The PostgreSQL notification channel of jobdock's announcements.
CHANNEL = "jobdock"
#: Where a transaction collects its announcements (``conn.info``).
ANNOUNCEMENTS = "jobdock_announcements"


def param(name: str) -> Any:
    """A named bind parameter (typed loosely: it stands in for any column)."""
    return bindparam(name)


def announce(conn: Connection, *messages: str) -> None:
    """Tell other processes about this transaction's changes, once it commits
    (``work``, ``job:ID``, ``cancel:ID``, ``schedules``). They are sent together just before
    the commit (see store/postgres.py). SQLite has no other processes to
    tell: its store raises the events itself."""
    if conn.dialect.name == "postgresql":
        conn.info.setdefault(ANNOUNCEMENTS, set()).update(messages)


def held() -> Any:
    """The job row is held by the attempt named by :job_id and :attempt."""
    return and_(
        jobs.c.id == param("job_id"),
        jobs.c.attempt == param("attempt"),
        jobs.c.state == JobState.RUNNING.value,
    )
