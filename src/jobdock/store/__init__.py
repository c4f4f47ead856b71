"""Persistence of jobs, attempts and logs. All SQL lives in this package.

The SQL implementation is ``jobdock.store.sql.SqlStore``; it is not imported
here, so that the client and CLI start without loading SQLAlchemy.
"""

from jobdock.models.outcome import Outcome
from jobdock.models.records import (
    Claim,
    HeartbeatReply,
    LogChunk,
    LogRead,
    LostAttempt,
    NewJob,
    Started,
)
from jobdock.store.protocol import Store

__all__ = [
    "Claim",
    "HeartbeatReply",
    "LogChunk",
    "LogRead",
    "LostAttempt",
    "NewJob",
    "Outcome",
    "Started",
    "Store",
]
