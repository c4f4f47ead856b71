"""ConJob's /job/run without a server: its conclusions of finished jobs, its
limits' counting, its settings and the spec fields it uses."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from jobdock.api.conjob import conclusion_of, docker_cache
from jobdock.api.conjob_limits import RunLimits
from jobdock.api.conjob_secrets import secret_name
from jobdock.models import Job, JobSpec, JobState, Reason
from jobdock.settings import Settings


def finished(state: JobState, reason: Reason | None, code: int | None, sig: int | None) -> Job:
    return Job.model_validate(
        {
            "id": "job_1",
            "state": state,
            "reason": reason,
            "exit_code": code,
            "signal": sig,
            "spec": {"image": "busybox"},
            "created_at": "2026-01-01T00:00:00Z",
            "attempt": 1,
            "owner": "alice",
        }
    )


@pytest.mark.parametrize(
    ("state", "reason", "code", "sig", "conclusion"),
    [
        (JobState.SUCCEEDED, Reason.EXITED, 0, None, ("SUCCESS", 0)),
        (JobState.FAILED, Reason.EXITED, 3, None, ("FAILURE", 3)),
        (JobState.FAILED, Reason.IMAGE_NOT_FOUND, None, None, ("NOT_FOUND", -1)),
        # Past its timeout, ended on its own within the kill grace.
        (JobState.FAILED, Reason.TIMEOUT, 0, None, ("SUCCESS", 0)),
        (JobState.FAILED, Reason.TIMEOUT, 4, None, ("FAILURE", 4)),
        # Ended by the stop's SIGTERM or SIGKILL.
        (JobState.FAILED, Reason.TIMEOUT, 143, 15, ("TIMED_OUT", -1)),
        (JobState.FAILED, Reason.TIMEOUT, 137, 9, ("TIMED_OUT", -1)),
        (JobState.CANCELLED, Reason.CANCELLED, 143, 15, ("UNKNOWN", 143)),
    ],
)
def test_a_finished_job_concludes_as_conjob_reports_it(
    state: JobState, reason: Reason, code: int | None, sig: int | None, conclusion: object
) -> None:
    assert conclusion_of(finished(state, reason, code, sig)) == conclusion


def test_caches_and_secrets_are_named_per_image() -> None:
    assert docker_cache("a/b:1") == docker_cache("a/b:1")
    assert docker_cache("a/b:1")["name"] != docker_cache("a/b:2")["name"]
    assert docker_cache("a/b:1")["path"] == "/var/lib/docker"
    assert secret_name("a/b:1") != secret_name("a/b:2")
    JobSpec(image="a/b:1", caches=[docker_cache("a/b:1")])  # a valid cache name
    JobSpec(image="a/b:1", secrets=[{"name": secret_name("a/b:1"), "file": "secrets"}])


async def test_a_run_over_the_limit_at_once_is_refused_and_its_end_frees_a_place() -> None:
    limits = RunLimits(max_runs=1, per_second=None, queue=False)
    async with limits.slot() as first:
        async with limits.slot() as second:
            assert (first, second) == (True, False)
        assert limits.running == 1
    async with limits.slot() as third:
        assert third


async def test_only_admitted_runs_count_towards_the_rate() -> None:
    now = [100.0]
    limits = RunLimits(max_runs=None, per_second=2, queue=False, clock=lambda: now[0])
    admitted = []
    for _ in range(4):
        async with limits.slot() as ok:
            admitted.append(ok)
    assert admitted == [True, True, False, False]
    now[0] += 1.0
    async with limits.slot() as later:
        assert later, "a second later the window has room"


async def test_with_queue_a_run_over_the_limit_waits_for_a_place() -> None:
    limits = RunLimits(max_runs=1, per_second=None, queue=True)
    order: list[str] = []

    async def run(name: str, hold: asyncio.Event | None) -> None:
        async with limits.slot() as ok:
            assert ok
            order.append(name)
            if hold is not None:
                await hold.wait()

    hold = asyncio.Event()
    first = asyncio.create_task(run("first", hold))
    await asyncio.sleep(0)
    second = asyncio.create_task(run("second", None))
    await asyncio.sleep(0)
    assert order == ["first"]
    hold.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order == ["first", "second"]


async def test_with_queue_a_run_over_the_rate_waits_for_the_window() -> None:
    limits = RunLimits(max_runs=None, per_second=1, queue=True)
    loop = asyncio.get_running_loop()
    async with limits.slot():
        first = loop.time()
    async with limits.slot() as ok:
        assert ok
        assert loop.time() - first >= 0.9, "admitted once the first run's second is over"


@pytest.mark.parametrize(
    "settings",
    [
        {"conjob_container_runtime": "sysbox-runc"},  # not in container_runtimes
        {"conjob_kill_grace": 86401},
        {"conjob_max_concurrent_runs": 0},
        {"cors_origins": ["pages.example"]},
        {"cors_origins": ["https://pages.example/path"]},
    ],
)
def test_conjob_and_cors_settings_are_bounded(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**settings)  # type: ignore[arg-type]


def test_conjob_settings_default_to_conjobs_own() -> None:
    settings = Settings()
    assert (settings.conjob_max_concurrent_runs, settings.conjob_max_requests_per_second) == (5, 5)
    assert (settings.conjob_timeout, settings.conjob_kill_grace) == (1800.0, 60.0)
    assert settings.conjob_over_limit == "reject" and settings.cors_origins == []
    assert (
        Settings(
            container_runtimes=["runc", "sysbox-runc"], conjob_container_runtime="sysbox-runc"
        ).conjob_container_runtime
        == "sysbox-runc"
    )


def test_secrets_path_and_remove_image_are_for_image_jobs_with_an_absolute_path() -> None:
    with pytest.raises(ValidationError, match="image jobs only"):
        JobSpec(command=["true"], remove_image=True)
    with pytest.raises(ValidationError, match="image jobs only"):
        JobSpec(command=["true"], secrets_path="/run/x")
    with pytest.raises(ValidationError, match="absolute"):
        JobSpec(image="busybox", secrets_path="run/x")
