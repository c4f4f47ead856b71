"""Retries as pure functions: the backoff delays, which failures retry, the
budget, and the total deadline; the clock and the jitter are passed in."""

from __future__ import annotations

import pytest

from jobdock.models import Backoff, Reason, RetryPolicy
from jobdock.retry import backoff_delay, next_attempt_at, retries_on

T0 = 1_700_000_000.0


def middle() -> float:
    """A jitter draw that moves nothing (2 * 0.5 - 1 == 0)."""
    return 0.5


def test_backoff_grows_by_its_multiplier_up_to_its_max() -> None:
    backoff = Backoff(initial="1s", multiplier=2, max="5s", jitter=0)

    delays = [backoff_delay(backoff, retry, middle) for retry in range(1, 6)]

    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_spreads_a_delay_by_at_most_its_fraction_either_way() -> None:
    backoff = Backoff(initial=10, multiplier=1, jitter=0.2)

    assert backoff_delay(backoff, 1, lambda: 0.0) == pytest.approx(8.0)
    assert backoff_delay(backoff, 1, lambda: 0.999999) == pytest.approx(12.0, abs=1e-4)
    assert backoff_delay(backoff, 1, middle) == 10.0


def test_a_huge_retry_number_is_capped_not_an_overflow() -> None:
    backoff = Backoff(initial=1, multiplier=100, max="1h", jitter=0)

    assert backoff_delay(backoff, 10_000, middle) == 3600.0


def test_by_default_exits_signals_timeouts_and_oom_retry_but_not_spawn_errors() -> None:
    policy = RetryPolicy()

    for reason in (Reason.EXITED, Reason.SIGNALED, Reason.TIMEOUT, Reason.OOM):
        assert retries_on(policy, reason, 1)
    for reason in (Reason.SPAWN_ERROR, Reason.CANCELLED, Reason.DEADLINE, Reason.WORKER_LOST):
        assert not retries_on(policy, reason, None)


def test_image_jobs_failures_retry_when_listed() -> None:
    policy = RetryPolicy.model_validate({"on_reasons": ["oom", "image_not_found"]})

    assert retries_on(policy, Reason.IMAGE_NOT_FOUND, None)
    assert retries_on(policy, Reason.OOM, None)
    assert not retries_on(policy, Reason.EXITED, 1)
    assert next_attempt_at(policy, Reason.IMAGE_NOT_FOUND, None, 0, T0, rand=middle) == T0 + 1


def test_exit_codes_narrow_which_exits_retry() -> None:
    policy = RetryPolicy(on_reasons=["exited", "image_not_found"], on_exit_codes=[75])

    assert retries_on(policy, Reason.EXITED, 75)
    assert not retries_on(policy, Reason.EXITED, 1)
    assert retries_on(policy, Reason.IMAGE_NOT_FOUND, None)
    assert not retries_on(policy, Reason.TIMEOUT, None)


def test_the_next_attempt_comes_after_the_backoff_until_the_budget_is_spent() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=Backoff(initial=2, multiplier=3, jitter=0))

    first = next_attempt_at(policy, Reason.EXITED, 1, failures=0, now=T0, rand=middle)
    second = next_attempt_at(policy, Reason.EXITED, 1, failures=1, now=T0, rand=middle)
    spent = next_attempt_at(policy, Reason.EXITED, 1, failures=2, now=T0, rand=middle)

    assert (first, second, spent) == (T0 + 2, T0 + 6, None)


def test_no_policy_or_an_unlisted_failure_fails_at_once() -> None:
    assert next_attempt_at(None, Reason.EXITED, 1, 0, T0) is None
    assert next_attempt_at(RetryPolicy(), Reason.SPAWN_ERROR, None, 0, T0) is None


def test_no_retry_that_would_start_after_the_total_deadline() -> None:
    policy = RetryPolicy(backoff=Backoff(initial=10, jitter=0))

    assert next_attempt_at(policy, Reason.EXITED, 1, 0, T0, finish_by=T0 + 5) is None
    assert next_attempt_at(policy, Reason.EXITED, 1, 0, T0, finish_by=T0 + 60) == T0 + 10
