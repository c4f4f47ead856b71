"""Token buckets (jobdock.rates): bursts, refill, and owners apart from
each other and from the server's share. A hand-moved clock stands for time."""

from __future__ import annotations

import pytest

from jobdock.rates import Buckets, OwnerAndServer, Rate, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_one_per_interval() -> None:
    bucket = TokenBucket(Rate(2.0, 3), now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25), "a refused request takes nothing"
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(Rate(10.0, 2), now=0.0)
    assert bucket.full(3600.0)
    assert [bucket.take(3600.0) for _ in range(3)][-1] > 0


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Rate(0.0, 1)
    with pytest.raises(ValueError):
        Rate(1.0, 0)


def test_keys_without_a_rate_are_not_limited_and_memory_stays_bounded() -> None:
    clock = Clock()
    buckets = Buckets(
        lambda key: None if key == "free" else Rate(1.0, 1), clock=clock, max_buckets=3
    )
    assert all(buckets.take("free") == 0.0 for _ in range(100))
    for key in ("a", "b", "c", "d", "e"):
        assert buckets.take(key) == 0.0
        assert buckets.take(key) > 0
    assert len(buckets._buckets) <= 3


def test_an_owner_over_its_limit_never_spends_the_servers_share() -> None:
    clock = Clock()
    limits = OwnerAndServer(lambda owner: Rate(1.0, 2), Rate(1.0, 3), clock=clock)
    outcomes = [limits.take("alice") for _ in range(50)]
    assert sum(outcome is None for outcome in outcomes) == 2
    refused = [outcome for outcome in outcomes if outcome is not None]
    assert {outcome.scope for outcome in refused} == {"owner"}
    # The server's bucket lost only alice's two: bob has the last of it.
    assert limits.take("bob") is None
    over = limits.take("carol")
    assert over is not None and over.scope == "server"
    assert over.retry_after == pytest.approx(1.0)
    # carol's refusal by the server gave her token back.
    clock.now += 1.0
    assert limits.take("carol") is None


def test_an_override_and_no_limit_per_owner() -> None:
    rates = {"ci": Rate(100.0, 100), "free": None}
    limits = OwnerAndServer(lambda owner: rates.get(owner, Rate(1.0, 1)), None, clock=Clock())
    assert all(limits.take("ci") is None for _ in range(100))
    assert all(limits.take("free") is None for _ in range(1000))
    assert limits.take("dave") is None
    assert limits.take("dave") is not None


def test_a_batch_takes_one_token_per_job_all_or_none() -> None:
    bucket = TokenBucket(Rate(1.0, 5), now=0.0)
    assert bucket.take(0.0, 4) == 0.0
    assert bucket.take(0.0, 2) == pytest.approx(1.0), "one short: a second to wait"
    assert bucket.take(0.0, 1) == 0.0, "the refused batch took nothing"
    assert bucket.take(0.0, 6) > 0, "more than the burst never passes"


def test_a_batch_the_server_refuses_gives_the_owners_tokens_back() -> None:
    clock = Clock()
    limits = OwnerAndServer(lambda owner: Rate(1.0, 10), Rate(1.0, 4), clock=clock)
    refused = limits.take("alice", count=5)
    assert refused is not None and refused.scope == "server"
    assert limits.take("alice", count=4) is None
    limits.give_back("alice")
    assert limits.take("alice") is None
