"""Retries: whether a failed attempt is run again, and when.

Pure functions of a :class:`RetryPolicy`, the attempt's outcome, the
current time and a source of randomness (both passed in), so that tests
decide the clock and the jitter. Imports only jobdock.models.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from jobdock.models import Backoff, Claim, JobState, Outcome, Reason, RetryPolicy

#: A random number in [0, 1).
Random = Callable[[], float]


def backoff_delay(backoff: Backoff, retry: int, rand: Random = random.random) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first):
    ``initial * multiplier**(retry-1)``, at most ``max``, spread by up to
    ``jitter`` of itself either way (never below zero)."""
    exponent = max(retry - 1, 0)
    try:
        delay = backoff.initial * backoff.multiplier**exponent
    except OverflowError:
        delay = backoff.max
    delay = min(delay, backoff.max)
    spread = delay * backoff.jitter * (2.0 * rand() - 1.0)
    return max(0.0, delay + spread)


def retries_on(policy: RetryPolicy, reason: Reason, exit_code: int | None) -> bool:
    """Whether an attempt that failed for ``reason`` (with ``exit_code``) is
    one the policy retries."""
    if reason.value not in policy.on_reasons:
        return False
    if reason is Reason.EXITED and policy.on_exit_codes is not None:
        return exit_code in policy.on_exit_codes
    return True


def next_attempt_at(
    policy: RetryPolicy | None,
    reason: Reason,
    exit_code: int | None,
    failures: int,
    now: float,
    finish_by: float | None = None,
    rand: Random = random.random,
) -> float | None:
    """When the next attempt may start after this failed one, or None if the
    job fails now: the policy does not retry this failure, its budget is
    spent (``failures`` attempts failed before this one), or the next
    attempt would start after the job's total deadline ``finish_by``."""
    if policy is None or not retries_on(policy, reason, exit_code):
        return None
    return retry_at(policy, failures, now, finish_by, rand)


def retry_at(
    policy: RetryPolicy,
    failures: int,
    now: float,
    finish_by: float | None = None,
    rand: Random = random.random,
) -> float | None:
    """When the attempt after a failure that spends the budget may start
    (None: the budget is spent, or the job's deadline comes first)."""
    spent = failures + 1
    if spent >= policy.max_attempts:
        return None
    at = now + backoff_delay(policy.backoff, spent, rand)
    if finish_by is not None and at >= finish_by:
        return None
    return at


def retried(outcome: Outcome, claim: Claim) -> Outcome:
    """The outcome as ``retrying`` if the job's retry policy runs it again."""
    if outcome.state is not JobState.FAILED:
        return outcome
    at = next_attempt_at(
        claim.spec.retry,
        outcome.reason,
        outcome.exit_code,
        claim.failures,
        outcome.finished_at,
        claim.finish_by,
    )
    if at is None:
        return outcome
    return replace(outcome, state=JobState.RETRYING, next_attempt_at=at)
