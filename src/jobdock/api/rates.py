"""Rate limits on submits (docs/security.md, "Rate limits"): ASGI
middleware that answers ``429`` with ``Retry-After`` to a submit over its
owner's limit (``submit_rate``, ``submit_burst``, per user
``submit_rate_overrides``, or the API token's own rate) or over the whole server's
(``submit_rate_server``, ``submit_burst_server``), before the body is read.

The buckets are ``jobdock.rates``' and are this process's own: with several
API servers on one store, each allows the rate.
"""

from __future__ import annotations

import math

from starlette.types import ASGIApp, Receive, Scope, Send

from jobdock.api.auth import PRINCIPAL
from jobdock.api.errors import send_error
from jobdock.auth import Principal
from jobdock.errors import RateLimited
from jobdock.rates import OwnerAndServer, Rate, Refusal
from jobdock.settings import Settings

#: The paths a POST to submits jobs: ``/v1/jobs`` (and ``/batch``: the
#: route spends one more token per job, see :func:`take_batch`), ``/v1/run``,
#: ``/v1/workflows``, and every path under these prefixes (dispatch
#: templates, docker-job-dispatcher's and ConJob's ``/job/...``).
SUBMIT_PATHS = frozenset({"/v1/jobs", "/v1/jobs/batch", "/v1/run", "/v1/workflows", "/job"})
SUBMIT_PREFIXES = ("/v1/dispatch/", "/job/")


def is_submit(scope: Scope) -> bool:
    """Whether a request submits jobs (and so spends a token)."""
    if scope.get("method") != "POST":
        return False
    path: str = scope["path"].rstrip("/") or "/"
    return path in SUBMIT_PATHS or path.startswith(SUBMIT_PREFIXES)


def _rate(per_second: float, burst: int) -> Rate | None:
    if per_second <= 0:
        return None
    return Rate(per_second, burst or max(1, math.ceil(per_second)))


def limits_of(settings: Settings) -> OwnerAndServer:
    """The buckets ``settings`` ask for."""
    default = _rate(settings.submit_rate, settings.submit_burst)
    overrides = {
        user: _rate(given.rate, given.burst)
        for user, given in settings.submit_rate_overrides.items()
    }

    def owner_rate(owner: str) -> Rate | None:
        return overrides.get(owner, default)

    return OwnerAndServer(
        owner_rate, _rate(settings.submit_rate_server, settings.submit_burst_server)
    )


def _own(who: object) -> tuple[str, Rate | None] | None:
    """The bucket key and rate of a token with a rate limit of its own."""
    if not isinstance(who, Principal) or who.submit_rate is None or who.token_id is None:
        return None
    return f"token:{who.token_id}", _rate(*who.submit_rate)


def refused(owner: str, refusal: Refusal, count: int = 1) -> RateLimited:
    """The error answering a submit (of ``count`` jobs) over a limit: it
    says when to retry."""
    rate = refusal.rate
    whose = f"of {owner}" if refusal.scope == "owner" else "of this server (all users)"
    if count > rate.burst:
        return RateLimited(
            f"a batch of {count} jobs is more than the {rate.burst} submits {whose} "
            f"allowed at once; send batches of at most {rate.burst}",
            retry_after=refusal.retry_after,
        )
    return RateLimited(
        f"too many submits {whose}: at most {rate.per_second:g} per second, "
        f"{rate.burst} at once; retry in {refusal.retry_after:.1f}s",
        retry_after=refusal.retry_after,
    )


def take_batch(scope: Scope, limits: OwnerAndServer, count: int) -> None:
    """Spend what a batch of ``count`` jobs spends beyond the token the
    middleware took for its request: one per job, all or none. A refused
    batch spends nothing (that token is given back), as a refused submit
    does; raises RateLimited."""
    if count <= 1:
        return
    who = scope.get(PRINCIPAL)
    owner = who.name if isinstance(who, Principal) else ""
    own = _own(who)
    refusal = limits.take(owner, own, count - 1)
    if refusal is not None:
        limits.give_back(owner, own)
        raise refused(owner, refusal, count)


class SubmitRates:
    """ASGI middleware (inside authentication): the rate limits on submits."""

    def __init__(self, app: ASGIApp, limits: OwnerAndServer) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_submit(scope):
            who = scope.get(PRINCIPAL)
            owner = who.name if isinstance(who, Principal) else ""
            refusal = self.limits.take(owner, _own(who))
            if refusal is not None:
                await send_error(send, refused(owner, refusal))
                return
        await self.app(scope, receive, send)
