"""A queued job that cannot start says why (``waiting_reason``), and a run
that waits for its end answers at once instead of hanging: a real server
whose container engine is missing (nothing answers at its docker_host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess

IMAGE = "localhost/busybox:1"
#: A request that would hang today fails the test after this many seconds.
PROMPT = 15.0


@pytest.fixture(scope="module")
def no_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with its embedded worker, and no engine at its docker_host."""
    home = tmp_path_factory.mktemp("no-engine")
    proc = ServerProcess(home, docker_host=f"unix://{home}/no-engine.sock").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def no_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """An API-only server: no worker runs its jobs."""
    proc = ServerProcess(tmp_path_factory.mktemp("no-worker"), args=("--no-worker",)).start()
    yield proc
    proc.stop()


def _submit(server: ServerProcess, spec: dict[str, object]) -> dict[str, object]:
    answer = httpx.post(f"{server.url}/v1/jobs", json=spec, timeout=PROMPT)
    assert answer.status_code == 201, answer.text
    job: dict[str, object] = answer.json()
    return job


def test_a_queued_image_job_says_there_is_no_container_engine(no_engine: ServerProcess) -> None:
    job = _submit(no_engine, {"image": IMAGE, "command": ["true"]})

    reason = job["waiting_reason"]
    assert isinstance(reason, str)
    assert reason.startswith("no container engine: no worker here can run image jobs")
    assert "no-engine.sock" in reason, "it names where no engine answers"
    got = httpx.get(f"{no_engine.url}/v1/jobs/{job['id']}").json()
    assert got["state"] == "queued" and got["waiting_reason"] == reason
    listed = httpx.get(f"{no_engine.url}/v1/jobs", params={"state": "queued"}).json()
    assert {j["id"]: j["waiting_reason"] for j in listed["jobs"]}[job["id"]] == reason


def test_a_process_job_on_the_same_server_has_no_waiting_reason(no_engine: ServerProcess) -> None:
    job = _submit(no_engine, {"command": ["true"]})
    assert job["waiting_reason"] is None
    done = httpx.get(f"{no_engine.url}/v1/jobs/{job['id']}/wait", params={"timeout": 10}).json()
    assert done["state"] == "succeeded" and done["waiting_reason"] is None


def test_a_job_no_live_worker_matches_names_its_requires(no_engine: ServerProcess) -> None:
    job = _submit(no_engine, {"command": ["true"], "requires": {"gpu": "h200"}})
    assert job["waiting_reason"] == 'no live worker matches requires {"gpu": "h200"}'


def test_without_any_worker_a_queued_job_says_so(no_worker: ServerProcess) -> None:
    job = _submit(no_worker, {"command": ["true"]})
    reason = job["waiting_reason"]
    assert isinstance(reason, str) and reason.startswith("no live worker:")
    assert "jobdock worker" in reason


def test_conjob_run_without_an_engine_answers_503_rejected_at_once(
    no_engine: ServerProcess,
) -> None:
    answer = httpx.get(
        f"{no_engine.url}/job/run",
        params={"image": IMAGE},
        headers={"Accept": "application/json"},
        timeout=PROMPT,
    )
    assert answer.status_code == 503
    body = answer.json()
    assert body["conclusion"] == "REJECTED"
    assert body["message"].startswith("no container engine")
    assert body["exitCode"] == -1 and body["output"] == ""

    plain = httpx.post(
        f"{no_engine.url}/job/run", params={"image": IMAGE}, content=b"hi", timeout=PROMPT
    )
    assert plain.status_code == 503
    assert plain.text.startswith("no container engine") and plain.text.endswith("\n")
    assert "X-Jobdock-Job-Id" not in plain.headers, "no job was made"


def test_v1_run_of_an_image_without_an_engine_answers_503_at_once(
    no_engine: ServerProcess,
) -> None:
    answer = httpx.post(
        f"{no_engine.url}/v1/run", json={"image": IMAGE, "command": ["true"]}, timeout=PROMPT
    )
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "cannot_start"
    assert error["message"].startswith("no container engine")


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBDOCK_URL": server.url}
    return subprocess.run(
        [sys.executable, "-m", "jobdock", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cli_run_warns_on_stderr_and_inspect_shows_why(no_engine: ServerProcess) -> None:
    result = _cli(no_engine, "run", "-d", "--image", IMAGE, "--", "true")

    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    warning = result.stderr.splitlines()
    assert len(warning) == 1, result.stderr
    assert warning[0].startswith(f"jobdock: warning: job {job_id} waits: no container engine")
    record = json.loads(_cli(no_engine, "inspect", job_id).stdout)
    assert record["waiting_reason"].startswith("no container engine")
    startable = _cli(no_engine, "run", "--", "echo", "hi")
    assert (startable.returncode, startable.stdout, startable.stderr) == (0, "hi\n", "")


def test_a_job_waiting_only_for_a_free_slot_has_no_reason(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "full", concurrency="0").start()
    try:
        job = _submit(server, {"command": ["true"]})
        assert job["state"] == "queued"
        assert job["waiting_reason"] is None, "a full worker is a turn to wait, not a reason"
    finally:
        server.stop()
