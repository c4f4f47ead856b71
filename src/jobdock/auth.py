"""Who is asking: principals and API tokens (their records, and the audit
log's, live in jobdock.models).

A :class:`Principal` is resolved once per request at the HTTP edge (see
``api/auth.py``), from a bearer token or a client certificate; everything
past the edge only asks it for its name and whether it is an admin. Tokens
are random, shown once, and stored only as their SHA-256 hash: a token has
256 bits of entropy, so a fast hash is enough (there is nothing to guess).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from jobdock.models import ANONYMOUS, timestamp
from jobdock.models.access import CreatedToken, TokenInfo
from jobdock.store.protocol import Store

#: Every token starts with this, so that leaked tokens are easy to scan for.
TOKEN_PREFIX = "jdk_"
_TOKEN = re.compile(r"jdk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


@dataclass(frozen=True, slots=True)
class Principal:
    """The user a request acts for."""

    name: str
    admin: bool = False
    #: The token's own rate limit on submits, (per second, burst 0 = the
    #: rate), and the token's id that keys it; None: the user's.
    submit_rate: tuple[float, int] | None = None
    token_id: str | None = None
    #: The id of the agent token the request came with (docs/agents.md):
    #: such a principal reaches the agent routes only. None for users.
    agent_token: str | None = None

    def may_see(self, owner: str) -> bool:
        """Whether this user may see and act on a job of ``owner``."""
        return self.admin or owner == self.name


#: Everyone, when the server has no authentication: today's single user.
LOCAL_USER = Principal(ANONYMOUS, admin=True)


def check_user_name(name: str) -> str:
    """``name`` if it is a valid user name; raises ValueError naming the rule."""
    if not _USER.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a user name (1-128 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just made: ``secret`` is shown once, only ``hash`` is stored."""

    id: str
    secret: str

    @property
    def hash(self) -> str:
        return token_hash(self.secret)


def new_token() -> NewToken:
    """A new random token: ``jdk_<12 hex id>_<43 url-safe characters>``."""
    token_id = secrets.token_hex(6)
    return NewToken(token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}")


def token_hash(token: str) -> str:
    """The hex SHA-256 of a token, as stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_of(token: str) -> str | None:
    """The id part of a well-formed token, or None for anything else."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def hash_matches(token: str, stored_hash: str) -> bool:
    """Whether ``token`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(token_hash(token), stored_hash)


#: The largest rate and burst a token may be given (as the settings').
MAX_SUBMIT_RATE = 1e6
MAX_SUBMIT_BURST = 1_000_000


def check_rate(rate: float | None, burst: int | None) -> float | None:
    """``rate`` if it and ``burst`` are a token's rate limit (within bounds;
    a burst needs a rate); raises ValueError naming the rule."""
    if rate is None:
        if burst is not None:
            raise ValueError("a submit burst needs a submit rate")
        return None
    if not 0 <= rate <= MAX_SUBMIT_RATE:
        raise ValueError(f"the submit rate must be from 0 to {MAX_SUBMIT_RATE:g} per second")
    if burst is not None and not 1 <= burst <= MAX_SUBMIT_BURST:
        raise ValueError(f"the submit burst must be from 1 to {MAX_SUBMIT_BURST}")
    return rate


async def create_token(
    store: Store,
    user: str,
    *,
    admin: bool = False,
    agent: bool = False,
    expires_in: float | None = None,
    actor: str = ANONYMOUS,
    submit_rate: float | None = None,
    submit_burst: int | None = None,
) -> CreatedToken:
    """Make a token for ``user``, valid for ``expires_in`` seconds (or until
    revoked), and store its hash; ``actor`` goes in the audit log. A
    ``submit_rate`` (per second; 0: none) and ``submit_burst`` are the
    token's own rate limit on submits, instead of its user's. An ``agent``
    token runs jobs as ``jobdock agent`` and does nothing else. Raises
    ValueError for a bad user name or rate, or an agent token asked to be
    an admin's."""
    check_user_name(user)
    if agent and admin:
        raise ValueError("an agent token cannot be an admin's (--agent and --admin)")
    made, now = new_token(), time.time()
    info = TokenInfo(
        id=made.id,
        user=user,
        admin=admin,
        agent=agent,
        created_at=timestamp(now),
        expires_at=timestamp(now + expires_in) if expires_in is not None else None,
        submit_rate=check_rate(submit_rate, submit_burst),
        submit_burst=submit_burst,
    )
    await store.create_token(info, made.hash, actor)
    return CreatedToken(token=made.secret, info=info)
