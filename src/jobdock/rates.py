"""Token buckets: how many requests a caller may make per second, with
bursts (docs/security.md, "Rate limits").

A bucket holds up to ``burst`` tokens and gains ``rate`` per second; each
request takes one, and a request that finds none is refused with the time
until one is back. :class:`Buckets` keeps one bucket per key (an owner, a
route...) in bounded memory. Nothing here knows about HTTP or the store, so
any limit of the server can use it; it imports nothing of jobdock's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: The most buckets :class:`Buckets` keeps; past it, full (idle) buckets go
#: first, which loses nothing: a new bucket starts full.
MAX_BUCKETS = 10_000


class Default:
    """The type of :data:`DEFAULT`: "the rate ``rate_of`` gives"."""


DEFAULT = Default()


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` requests a second, up to ``burst`` at once."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)) or self.burst < 1:
            raise ValueError("a rate needs per_second > 0 and burst >= 1")


class TokenBucket:
    """One bucket; starts full."""

    __slots__ = ("_stamp", "_tokens", "rate")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = float(rate.burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        elapsed = max(now - self._stamp, 0.0)
        self._tokens = min(float(self.rate.burst), self._tokens + elapsed * self.rate.per_second)
        self._stamp = max(now, self._stamp)

    def wait(self, now: float, count: int = 1) -> float:
        """Seconds until ``count`` tokens are there (0: they are there now);
        takes nothing. More than the burst are never all there: the wait
        is then never 0."""
        self._refill(now)
        if self._tokens >= count:
            return 0.0
        return (count - self._tokens) / self.rate.per_second

    def take(self, now: float, count: int = 1) -> float:
        """Take ``count`` tokens: 0 when taken, else the seconds until they
        are there (and nothing is taken)."""
        wait = self.wait(now, count)
        if wait == 0.0:
            self._tokens -= count
        return wait

    def give_back(self, count: int = 1) -> None:
        """Return tokens taken for a request that was refused after all."""
        self._tokens = min(float(self.rate.burst), self._tokens + count)

    def full(self, now: float) -> bool:
        """Whether the bucket is full (so forgetting it changes nothing)."""
        self._refill(now)
        return self._tokens >= self.rate.burst


class Buckets:
    """One bucket per key, each with the rate ``rate_of(key)`` gives (None:
    that key is not limited). Not thread-safe: one event loop uses it."""

    def __init__(
        self,
        rate_of: Callable[[str], Rate | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self._rate_of = rate_of
        self._clock = clock
        self._max = max_buckets
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, key: str, rate: Rate | Default | None = DEFAULT) -> TokenBucket | None:
        """The bucket of ``key``, made on first use with ``rate`` (by
        default, what ``rate_of`` says); None when it has no limit."""
        found = self._buckets.get(key)
        if found is not None:
            return found
        if isinstance(rate, Default):
            rate = self._rate_of(key)
        if rate is None:
            return None
        if len(self._buckets) >= self._max:
            self._forget_full()
        made = self._buckets[key] = TokenBucket(rate, self._clock())
        return made

    def take(self, key: str) -> float:
        """Take a token of ``key``'s bucket: 0 when allowed, else the
        seconds to wait."""
        found = self.bucket(key)
        return 0.0 if found is None else found.take(self._clock())

    def now(self) -> float:
        """This limiter's clock."""
        return self._clock()

    def _forget_full(self) -> None:
        now = self._clock()
        for key in [key for key, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[key]
        while len(self._buckets) >= self._max:
            # All busy: the oldest made goes (it refills to full when made again).
            del self._buckets[next(iter(self._buckets))]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over a limit: which one (``owner`` or ``server``), its
    rate, and the seconds until a retry may pass."""

    scope: str
    rate: Rate
    retry_after: float


class OwnerAndServer:
    """Per-owner buckets and one for the whole server. A request is
    checked against its owner's bucket first, and only one its owner may
    make takes from the server's: an owner over its limit never spends
    what the others share."""

    _SERVER = ""

    def __init__(
        self,
        owner_rate: Callable[[str], Rate | None],
        server_rate: Rate | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owners = Buckets(owner_rate, clock=clock)
        self._server = Buckets(lambda _key: server_rate, clock=clock, max_buckets=1)

    def take(
        self, owner: str, own: tuple[str, Rate | None] | None = None, count: int = 1
    ) -> Refusal | None:
        """Take ``count`` tokens (one per job) for a request of ``owner``:
        None when it may pass, else the refusal (and nothing is taken).
        ``own`` is a key and rate of the caller's own (an API token's) that
        replace the owner's."""
        now = self._owners.now()
        mine = self._owners.bucket(owner) if own is None else self._owners.bucket(*own)
        if mine is not None:
            wait = mine.take(now, count)
            if wait:
                return Refusal("owner", mine.rate, wait)
        shared = self._server.bucket(self._SERVER)
        if shared is not None:
            wait = shared.take(now, count)
            if wait:
                if mine is not None:
                    mine.give_back(count)
                return Refusal("server", shared.rate, wait)
        return None

    def give_back(self, owner: str, own: tuple[str, Rate | None] | None = None) -> None:
        """Return the token :meth:`take` took for a request refused after all."""
        mine = self._owners.bucket(owner) if own is None else self._owners.bucket(*own)
        if mine is not None:
            mine.give_back()
        shared = self._server.bucket(self._SERVER)
        if shared is not None:
            shared.give_back()
