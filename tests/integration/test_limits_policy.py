"""Limits that do not need root: the output cap, what a server that cannot
isolate does with jobs that ask for limits (by configuration), and which of
that policy applies to image jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobdock import Client, JobState, Reason
from support import ServerProcess

FLOOD = ["sh", "-c", "yes jobdock | head -c 1000000; echo done >&2"]


def _output(client: Client, job_id: str) -> bytes:
    return b"".join(data for _, data in client.logs(job_id))


def test_a_job_past_its_output_limit_is_stopped_with_reason_output_limit(client: Client) -> None:
    job = client.submit({"command": ["sh", "-c", "yes jobdock"], "output_limit": "64k"})
    job = client.wait(job.id, timeout=60)

    assert (job.state, job.reason) == (JobState.FAILED, Reason.OUTPUT_LIMIT)
    assert len(_output(client, job.id)) == 64 * 1024


def test_output_past_the_limit_is_dropped_when_the_spec_says_drop(client: Client) -> None:
    spec = {"command": FLOOD, "output_limit": 1000, "on_output_limit": "drop"}
    job = client.wait(client.submit(spec).id, timeout=60)

    assert job.state is JobState.SUCCEEDED
    assert len(_output(client, job.id)) == 1000
    assert "were dropped" in (job.message or "")


@pytest.fixture(scope="module")
def unconfined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server without cgroups that runs jobs anyway (the default policy)."""
    server = ServerProcess(tmp_path_factory.mktemp("unconfined"), cgroups="off").start()
    yield server
    server.stop()


def test_a_server_without_cgroups_runs_limited_jobs_and_says_they_were_not(
    unconfined: ServerProcess,
) -> None:
    with Client(unconfined.url) as client:
        job = client.wait(client.submit({"command": ["true"], "resources": {"memory": "64m"}}).id)

    assert job.state is JobState.SUCCEEDED
    assert job.attempts[0].isolation == "none"
    assert "ran without isolation" in (job.message or "")
    assert "cannot fully isolate" in unconfined.log()


def test_a_server_without_cgroups_refuses_limited_jobs_when_configured_to(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, cgroups="off", unisolated="refuse").start()
    try:
        reply = httpx.post(
            f"{server.url}/v1/jobs", json={"command": ["true"], "resources": {"pids": 10}}
        )
        plain = httpx.post(f"{server.url}/v1/jobs", json={"command": ["true"]})
    finally:
        server.stop()

    assert reply.status_code == 422
    assert reply.json()["error"]["field"] == "resources"
    assert "need cgroups" in reply.json()["error"]["message"]
    assert plain.status_code == 201


def test_image_jobs_get_the_servers_limits_but_are_not_refused_for_its_lack_of_cgroups(
    tmp_path: Path,
) -> None:
    # The engine is not there: image jobs stay queued; what matters is what
    # submit accepts and stores, with a worker that cannot make cgroups.
    server = ServerProcess(
        tmp_path,
        docker_host=f"unix://{tmp_path}/no-engine.sock",
        cgroups="off",
        unisolated="refuse",
        default_resources='{"memory": "64m", "io_read_bps": "1m"}',
        max_resources='{"cpus": 1}',
    ).start()
    try:
        accepted = httpx.post(
            f"{server.url}/v1/jobs", json={"image": "busybox", "resources": {"pids": 10}}
        )
        too_many_cpus = httpx.post(
            f"{server.url}/v1/jobs", json={"image": "busybox", "resources": {"cpus": 2}}
        )
        isolated = httpx.post(f"{server.url}/v1/jobs", json={"image": "busybox", "isolation": True})
        process = httpx.post(
            f"{server.url}/v1/jobs", json={"command": ["true"], "resources": {"pids": 10}}
        )
    finally:
        server.stop()

    assert accepted.status_code == 201, accepted.text
    resources = accepted.json()["spec"]["resources"]
    assert (resources["memory"], resources["cpus"], resources["pids"]) == (64 << 20, 1, 10)
    assert resources["io_read_bps"] is None, "an image job has no io limits"
    assert too_many_cpus.status_code == 422
    assert too_many_cpus.json()["error"]["field"] == "resources.cpus"
    assert isolated.status_code == 422
    assert isolated.json()["error"]["field"] == "isolation"
    assert "isolated by the engine" in isolated.json()["error"]["message"]
    assert process.status_code == 422, "a process job with limits is refused here"
