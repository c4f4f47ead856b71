"""Scheduling through a real server (docs/scheduling.md): run_at, retries,
idempotent submits, concurrency limits under load, deadlines, retention and
a cron schedule that really fires."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from jobdock import ApiError, Client, JobState, Reason
from jobdock.client import AsyncClient
from jobdock.models import Job
from support import ServerProcess, eventually


def wait(client: Client, job_id: str) -> Job:
    return client.wait(job_id, timeout=60)


def test_a_job_scheduled_a_second_ahead_starts_on_time(client: Client) -> None:
    run_at = time.time() + 1.0
    job = client.submit(
        {"command": ["true"], "run_at": datetime.fromtimestamp(run_at, UTC).isoformat()}
    )
    assert job.state is JobState.SCHEDULED

    done = wait(client, job.id)

    assert done.state is JobState.SUCCEEDED
    assert done.started_at is not None
    late = done.started_at.timestamp() - run_at
    assert 0 <= late < 1.0, f"started {late:.3f}s after its run_at"


def test_a_run_at_in_the_past_is_refused_unless_allowed(server: ServerProcess) -> None:
    past = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
    refused = httpx.post(f"{server.url}/v1/jobs", json={"command": ["true"], "run_at": past})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "run_at"
    naive = httpx.post(
        f"{server.url}/v1/jobs", json={"command": ["true"], "run_at": "2030-01-01T10:00:00"}
    )
    assert naive.status_code == 422

    allowed = httpx.post(
        f"{server.url}/v1/jobs", json={"command": ["true"], "run_at": past, "allow_past": True}
    )
    assert allowed.status_code == 201
    assert allowed.json()["state"] == "queued"


def test_a_failed_job_is_retried_and_each_attempt_is_kept(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    job = client.submit(
        {
            "command": [
                "sh",
                "-c",
                f"echo try; test -e {marker} && exit 0; touch {marker}; exit 3",
            ],
            "retry": {"max_attempts": 3, "backoff": {"initial": "0.3s", "jitter": 0}},
        }
    )

    done = wait(client, job.id)

    assert done.state is JobState.SUCCEEDED
    assert [(a.number, a.exit_code) for a in done.attempts] == [(1, 3), (2, 0)]
    first, second = done.attempts
    assert first.finished_at is not None and second.started_at is not None
    assert (second.started_at - first.finished_at).total_seconds() >= 0.3


def test_retries_stop_when_the_budget_is_spent(client: Client) -> None:
    job = client.submit(
        {
            "command": ["sh", "-c", "exit 4"],
            "retry": {"max_attempts": 3, "backoff": {"initial": "0.05s", "jitter": 0}},
        }
    )

    done = wait(client, job.id)

    assert (done.state, done.exit_code) == (JobState.FAILED, 4)
    assert [a.exit_code for a in done.attempts] == [4, 4, 4]


def test_a_job_between_attempts_is_retrying_with_its_next_start(client: Client) -> None:
    job = client.submit(
        {"command": ["false"], "retry": {"max_attempts": 2, "backoff": {"initial": "1h"}}}
    )

    waiting = eventually(
        lambda: (j := client.get(job.id)).state is JobState.RETRYING and j,
        what="the job to be retrying",
    )

    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at.timestamp() > time.time() + 3000
    client.cancel(job.id)


def test_an_idempotent_resubmit_answers_200_with_the_same_job(server: ServerProcess) -> None:
    spec = {"command": ["true"], "idempotency_key": f"key-{time.time_ns()}"}

    async def submit_many() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url) as http:
            return await asyncio.gather(*(http.post("/v1/jobs", json=spec) for _ in range(20)))

    answers = asyncio.run(submit_many())

    assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
    assert len({a.json()["id"] for a in answers}) == 1


def test_a_concurrency_key_is_never_exceeded_under_200_concurrent_submissions(
    client: Client, server: ServerProcess, tmp_path: Path
) -> None:
    running, counts = tmp_path / "running", tmp_path / "counts"
    running.mkdir()
    script = (
        f"mkdir {running}/$JOBDOCK_JOB_ID; ls {running} | wc -l >> {counts}; "
        f"sleep 0.02; rmdir {running}/$JOBDOCK_JOB_ID"
    )
    spec = {
        "command": ["sh", "-c", script],
        "concurrency_key": f"limited-{time.time_ns()}",
        "concurrency_limit": 3,
    }

    async def submit_all() -> list[Job]:
        async with AsyncClient(server.url) as aio:
            return await asyncio.gather(*(aio.submit(spec) for _ in range(200)))

    jobs = asyncio.run(submit_all())
    finished = [wait(client, job.id) for job in jobs]

    assert all(job.state is JobState.SUCCEEDED for job in finished)
    seen = [int(line) for line in counts.read_text().split()]
    assert len(seen) == 200
    assert max(seen) <= 3, f"{max(seen)} jobs of the key ran at once"


def test_a_job_not_started_within_its_queue_timeout_fails_with_deadline(
    client: Client,
) -> None:
    job = client.submit(
        {
            "command": ["true"],
            "concurrency_key": "paused-key",
            "concurrency_limit": 0,
            "queue_timeout": "0.5s",
        }
    )

    done = wait(client, job.id)

    assert (done.state, done.reason) == (JobState.FAILED, Reason.DEADLINE)
    assert done.attempts == []


def test_a_running_job_is_stopped_at_its_total_timeout(client: Client) -> None:
    job = client.submit({"command": ["sleep", "30"], "total_timeout": "1s", "kill_grace": 1})

    done = wait(client, job.id)

    assert (done.state, done.reason) == (JobState.FAILED, Reason.DEADLINE)


def test_prune_deletes_finished_jobs_past_their_keep_for(client: Client) -> None:
    # A keep_for of 0s has passed as soon as the job has finished: no wall
    # clock to wait for (the server's clock has moved on since its finish).
    job = client.submit({"command": ["echo", "bye"], "keep_for": "0s"})
    kept = client.submit({"command": ["true"]})
    wait(client, job.id)
    wait(client, kept.id)

    assert client.prune() >= 1

    with pytest.raises(ApiError) as caught:
        client.get(job.id)
    assert caught.value.status == 404
    assert client.get(kept.id).state is JobState.SUCCEEDED


def test_a_cron_schedule_fires_for_real(client: Client) -> None:
    name = f"every-second-{time.time_ns()}"
    client.add_schedule(
        {"name": name, "cron": "* * * * * *", "overlap": "forbid", "job": {"command": ["true"]}}
    )
    try:
        jobs = eventually(
            lambda: [
                j
                for j in client.list(labels={"jobdock.schedule": name}).jobs
                if j.state is JobState.SUCCEEDED
            ],
            timeout=20,
            what="a job of the schedule to succeed",
        )
    finally:
        client.remove_schedule(name)
    assert jobs[0].spec.idempotency_key is not None
    assert jobs[0].spec.idempotency_key.startswith(f"schedule:{name}:")


def test_schedules_are_listed_paused_resumed_and_removed(client: Client) -> None:
    name = f"nightly-{time.time_ns()}"
    added = client.add_schedule(
        {"name": name, "cron": "0 3 * * *", "tz": "Europe/Berlin", "job": {"command": ["true"]}}
    )
    assert added.next_fire_at is not None
    with pytest.raises(ApiError) as caught:
        client.add_schedule({"name": name, "cron": "* * * * *", "job": {"command": ["true"]}})
    assert caught.value.status == 409

    assert client.pause_schedule(name).paused
    assert not client.pause_schedule(name, paused=False).paused
    assert name in [s.name for s in client.schedules()]
    client.remove_schedule(name)
    assert name not in [s.name for s in client.schedules()]


def test_a_bad_cron_is_a_422_naming_the_field(server: ServerProcess) -> None:
    answer = httpx.post(
        f"{server.url}/v1/schedules",
        json={"name": "bad", "cron": "every day", "job": {"command": ["true"]}},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "cron"
