"""Cron fire times (in a time zone, across daylight-saving changes) and what
a schedule does when its time comes, against explicit clocks."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from jobdock.errors import InvalidSpec
from jobdock.models import Schedule, ScheduleSpec, timestamp
from jobdock.schedules import SCHEDULE_LABEL, next_fire_time, plan_turn, validate
from jobdock.settings import Settings
from jobdock.submit import Policy

BERLIN = ZoneInfo("Europe/Berlin")


def at(*parts: int, tz: ZoneInfo = BERLIN, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=tz, fold=fold).timestamp()  # type: ignore[misc]


def fires(cron: str, start: float, count: int, tz: str = "Europe/Berlin") -> list[str]:
    found, moment = [], start
    for _ in range(count):
        moment = next_fire_time(cron, tz, moment)
        found.append(datetime.fromtimestamp(moment, ZoneInfo(tz)).isoformat())
    return found


def test_fire_times_follow_the_wall_clock_of_the_time_zone() -> None:
    assert fires("0 9 * * 1-5", at(2026, 6, 5, 12, 0), 2) == [
        "2026-06-08T09:00:00+02:00",
        "2026-06-09T09:00:00+02:00",
    ]


def test_spring_forward_a_time_in_the_gap_fires_just_after_it() -> None:
    # 2026-03-29: clocks jump from 02:00 to 03:00 in Berlin.
    assert fires("30 2 * * *", at(2026, 3, 27, 12, 0), 3) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_fall_back_a_fixed_time_fires_once() -> None:
    # 2026-10-25: clocks go back from 03:00 to 02:00; 02:30 happens twice.
    assert fires("30 2 * * *", at(2026, 10, 24, 12, 0), 3) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_fall_back_an_interval_fires_through_both_passes_of_the_hour() -> None:
    assert fires("*/30 * * * *", at(2026, 10, 25, 1, 40), 5) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_six_fields_give_seconds() -> None:
    start = at(2026, 1, 1, 0, 0)
    assert next_fire_time("* * * * * */5", "UTC", start) == start + 5


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"cron": "61 * * * *"}, "cron"), ({"cron": "* *"}, "cron"), ({"tz": "Mars/Olympus"}, "tz")],
)
def test_a_bad_cron_or_time_zone_is_an_invalid_spec(fields: dict[str, str], field: str) -> None:
    spec = ScheduleSpec(
        **{"name": "n", "cron": "* * * * *", "job": {"command": ["true"]}, **fields}
    )
    with pytest.raises(InvalidSpec) as caught:
        validate(spec)
    assert caught.value.field == field


def schedule(next_fire: float, catchup: str = "skip") -> Schedule:
    return Schedule(
        name="report",
        owner="alice",
        cron="0 * * * *",
        tz="UTC",
        job={"command": ["true"], "labels": {"team": "data"}},
        catchup=catchup,
        created_at=timestamp(next_fire - 3600),
        next_fire_at=timestamp(next_fire),
    )


HOUR = at(2026, 5, 1, 10, 0, tz=ZoneInfo("UTC"))
POLICY = Policy(Settings(misfire_seconds=60))


def test_a_fire_on_time_submits_its_job_keyed_by_the_fire_time() -> None:
    plan = plan_turn(schedule(HOUR), now=HOUR + 0.2, policy=POLICY)

    assert (plan.expected, plan.fire_at, plan.next_fire_at) == (HOUR, HOUR, HOUR + 3600)
    assert plan.job is not None
    assert plan.job.spec.idempotency_key == f"schedule:report:{HOUR:.0f}"
    assert plan.job.spec.labels == {"team": "data", SCHEDULE_LABEL: "report"}
    assert plan.job.owner == "alice", "a schedule's jobs are its owner's"


def test_after_downtime_skip_runs_nothing_for_missed_fires() -> None:
    plan = plan_turn(schedule(HOUR), now=HOUR + 5 * 3600 + 600, policy=POLICY)

    assert plan.fire_at is None and plan.job is None
    assert plan.next_fire_at == HOUR + 6 * 3600


def test_after_downtime_once_runs_one_job_for_the_latest_missed_fire() -> None:
    plan = plan_turn(schedule(HOUR, "once"), now=HOUR + 5 * 3600 + 600, policy=POLICY)

    assert plan.fire_at == HOUR + 5 * 3600
    assert plan.job is not None
    assert plan.next_fire_at == HOUR + 6 * 3600
