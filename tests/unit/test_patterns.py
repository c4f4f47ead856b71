"""Every name jobdock checks is checked whole (issue 15): a pattern ending
in ``$`` also matched before a trailing newline, so ``busybox\\n`` was taken,
stored, and then failed validation on every read of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from jobdock.auth import check_user_name, token_id_of
from jobdock.errors import InvalidSpec
from jobdock.models import (
    MAX_DURATION,
    MAX_SIZE,
    Cache,
    JobSpec,
    ScheduleSpec,
    SecretRef,
    check_secret_name,
    normalize_image,
    parse_duration,
    parse_size,
)
from jobdock.models.workflow import document

JOB = {"command": ["true"]}

#: name -> a check that must refuse a value ending in a newline.
CHECKS: dict[str, Callable[[str], Any]] = {
    "image": normalize_image,
    "job image": lambda v: JobSpec(image=v),
    "container user": lambda v: JobSpec(image="busybox", user=v),
    "network": lambda v: JobSpec(image="busybox", network=v),
    "container runtime": lambda v: JobSpec(image="busybox", container_runtime=v),
    "label key": lambda v: JobSpec(**JOB, labels={v: "x"}),
    "requires key": lambda v: JobSpec(**JOB, requires={v: "x"}),
    "concurrency key": lambda v: JobSpec(**JOB, concurrency_key=v),
    "env name": lambda v: JobSpec(**JOB, env={v: "x"}),
    "cache name": lambda v: Cache(name=v, path="/c"),
    "secret name": check_secret_name,
    "secret env": lambda v: SecretRef(name="pw", env=v),
    "secret file": lambda v: SecretRef(name="pw", file=v),
    "schedule name": lambda v: ScheduleSpec(name=v, cron="* * * * *", job=JobSpec(**JOB)),
    "user": check_user_name,
    "workflow name": lambda v: document({"name": v, "steps": [{"name": "a", "job": JOB}]}),
    "step name": lambda v: document({"name": "w", "steps": [{"name": v, "job": JOB}]}),
    "param name": lambda v: document(
        {"name": "w", "params": {v: 1}, "steps": [{"name": "a", "job": JOB}]}
    ),
}
GOOD = {"image": "busybox", "job image": "busybox", "container user": "1000:1000"}


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_a_name_with_a_trailing_newline_is_refused(check: str) -> None:
    good = GOOD.get(check, "PW" if "env" in check else "name1")
    CHECKS[check](good)

    with pytest.raises((ValueError, ValidationError, InvalidSpec)):
        CHECKS[check](good + "\n")


def test_a_token_with_a_trailing_newline_is_not_a_token() -> None:
    token = "jdk_0123456789ab_" + "A" * 43

    assert token_id_of(token) == "0123456789ab"
    assert token_id_of(token + "\n") is None


@pytest.mark.parametrize("value", [None, [], {}, [1], object()])
def test_a_duration_or_size_of_another_type_is_a_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize("value", [1e308, 10**400, MAX_DURATION + 1, "9" * 400, "1e999"])
def test_a_duration_longer_than_a_century_is_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", [1e308, 10**30, MAX_SIZE + 1, "9" * 400 + "t", 1.5])
def test_a_size_beyond_what_the_store_keeps_is_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


def test_the_largest_duration_and_size_are_taken() -> None:
    assert parse_duration(MAX_DURATION) == MAX_DURATION
    assert parse_size(MAX_SIZE) == MAX_SIZE
    assert parse_size(4096.0) == 4096
