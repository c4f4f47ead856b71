"""docker-job's API without a server: how ``scheduled_for`` is read, its
statuses, and the setting that names its pool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from jobdock.api.dockerjob import STATUS, STATUSES, scheduled_time
from jobdock.models import JobState
from jobdock.settings import Settings

NOW = datetime(2026, 12, 2, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        ("2026-12-02T10:00:00Z", datetime(2026, 12, 2, 10, tzinfo=UTC)),
        ("2026-12-02T10:00:00+02:00", datetime(2026, 12, 2, 8, tzinfo=UTC)),
        ("2026-12-02 10:00:00 -0300", datetime(2026, 12, 2, 13, tzinfo=UTC)),
        ("2026-12-02 10:00", datetime(2026, 12, 2, 10, tzinfo=UTC)),
        ("2026-12-03", datetime(2026, 12, 3, tzinfo=UTC)),
        ("10:00", datetime(2026, 12, 2, 10, tzinfo=UTC)),
        (" 10:00:30 ", datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)),
    ],
)
def test_scheduled_for_is_read_as_docker_jobs_users_write_it(text: str, meant: datetime) -> None:
    found = scheduled_time(text, NOW)
    assert found == meant
    assert found.utcoffset() is not None


def test_a_time_of_day_is_todays_even_when_it_has_passed() -> None:
    assert scheduled_time("07:00", NOW) == NOW - timedelta(hours=1, minutes=30)


@pytest.mark.parametrize("text", ["tomorrow", "25:00", "2026-13-01", "", "10"])
def test_what_is_no_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        scheduled_time(text, NOW)


def test_every_job_state_has_a_docker_job_status() -> None:
    assert set(STATUS) == set(JobState)
    assert set(STATUS.values()) == set(STATUSES)
    assert STATUS[JobState.SUCCEEDED] == "DONE"
    assert STATUS[JobState.CANCELLED] == "FAILED"


def test_the_pool_of_docker_jobs_jobs_must_be_one_of_the_pools() -> None:
    pool = {"name": "spot", "provider": "command", "command": {"start": ["a"], "stop": ["b"]}}
    spot = Settings(pools=[pool], dockerjob_pool="spot", tokens=True)  # type: ignore[list-item]
    assert spot.dockerjob_pool == "spot"
    with pytest.raises(ValidationError, match="no pool 'other'"):
        Settings(pools=[pool], dockerjob_pool="other", tokens=True)  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="no pool"):
        Settings(dockerjob_pool="spot")


def test_docker_jobs_api_is_on_unless_turned_off() -> None:
    assert Settings().dockerjob_api is True
    assert Settings(dockerjob_api=False).dockerjob_api is False
