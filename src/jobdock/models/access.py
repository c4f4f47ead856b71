"""The records of who may do what: API tokens as listed and stored, the
audit log's entries, and a user's secrets as listed (never their values).

Imports nothing of jobdock's.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from jobdock.models.base import Model


class TokenInfo(Model):
    """An API token as listed: never the token itself."""

    id: str
    user: str
    admin: bool
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    submit_rate: float | None = Field(
        None, description="This token's own submits per second (0: none); null: its user's."
    )
    submit_burst: int | None = Field(None, description="This token's submits at once.")
    agent: bool = Field(
        False, description="An agent's token: it reaches the agent routes only (docs/agents.md)."
    )

    def valid_at(self, now: datetime) -> bool:
        """Whether the token may be used at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class StoredToken(Model):
    """A token's record with the hash it is checked against."""

    info: TokenInfo
    hash: str


class CreatedToken(Model):
    """A token just created: the only time ``token`` is shown."""

    token: str
    info: TokenInfo


class AuditEntry(Model):
    """Who did what, and when."""

    seq: int
    at: datetime
    actor: str
    action: str = Field(description="submit, cancel, secret.set, secret.rm, ...")
    target: str = Field(description="The job id, or the secret's or token's name.")


class AuditPage(Model):
    """One page of the audit log, newest first."""

    entries: list[AuditEntry]
    next_cursor: str | None = None


class SecretInfo(Model):
    """A secret as listed: its name and times, never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


class SecretList(Model):
    """A user's secrets, by name."""

    secrets: list[SecretInfo]
