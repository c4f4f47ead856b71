"""Persistence of jobs, attempts and logs. All SQL lives in this package."""

from jobdock.store.protocol import (
    Claim,
    HeartbeatReply,
    LogChunk,
    LogRead,
    LostAttempt,
    NewJob,
    Outcome,
    Started,
    Store,
)
from jobdock.store.sql import SqlStore

__all__ = [
    "Claim",
    "HeartbeatReply",
    "LogChunk",
    "LogRead",
    "LostAttempt",
    "NewJob",
    "Outcome",
    "SqlStore",
    "Started",
    "Store",
]
