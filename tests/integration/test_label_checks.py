"""Labels that are checked, not only declared (Jobrunner's ``port_is_free``):
a real ``jobdock serve`` whose worker asks a command, before it claims a
job that requires the label, whether it can take one now."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobdock import Client
from jobdock.models import JobState
from support import ServerProcess, eventually


@pytest.fixture
def free_port_file(tmp_path: Path) -> Path:
    """While this file exists, the worker's check says the port is free."""
    return tmp_path / "port-is-free"


@pytest.fixture
def checked(tmp_path: Path, free_port_file: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path / "home",
        labels=json.dumps({"port": "8887"}),
        label_checks=json.dumps(
            {"port": f'test -e {free_port_file} && [ "$JOBDOCK_LABEL" = port ]'}
        ),
    ).start()
    yield server
    server.stop()


def _state(client: Client, job_id: str) -> JobState:
    return client.get(job_id).state


def test_a_job_needing_a_checked_label_runs_only_while_its_check_says_yes(
    checked: ServerProcess, free_port_file: Path
) -> None:
    with Client(checked.url) as client:
        webserver = client.submit({"command": ["echo", "serving"], "requires": {"port": "8887"}})
        # The worker is not held up: a job needing no check runs meanwhile,
        # and the checked one is still queued after it.
        plain = client.wait(client.submit({"command": ["true"]}).id, timeout=30)
        assert plain.state is JobState.SUCCEEDED
        assert _state(client, webserver.id) is JobState.QUEUED

        free_port_file.touch()
        done = client.wait(webserver.id, timeout=30)
        assert done.state is JobState.SUCCEEDED

        # The check flips back: the next such job waits again.
        free_port_file.unlink()
        second = client.submit({"command": ["true"], "requires": {"port": "8887"}})
        assert client.wait(client.submit({"command": ["true"]}).id, timeout=30).exit_code == 0
        assert _state(client, second.id) is JobState.QUEUED
        free_port_file.touch()
        assert client.wait(second.id, timeout=30).state is JobState.SUCCEEDED


def test_a_check_that_hangs_counts_as_no_and_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    server = ServerProcess(
        tmp_path / "home",
        labels=json.dumps({"port": "8887"}),
        label_checks=json.dumps({"port": f"echo $$ >> {pids}; exec sleep 600"}),
        label_check_timeout="0.3",
    ).start()
    try:
        with Client(server.url) as client:
            job = client.submit({"command": ["true"], "requires": {"port": "8887"}})
            first = eventually(
                lambda: pids.exists() and pids.read_text().split(),
                what="the check to be asked",
            )[0]
            # Killed once its time is up, and asked again (still no).
            eventually(lambda: not Path(f"/proc/{first}").exists(), what="the check killed")
            eventually(lambda: len(pids.read_text().split()) >= 2, what="the check asked again")
            plain = client.wait(client.submit({"command": ["true"]}).id, timeout=30)
            assert plain.state is JobState.SUCCEEDED
            assert _state(client, job.id) is JobState.QUEUED
            client.cancel(job.id)
    finally:
        server.stop()
    for pid in pids.read_text().split():
        assert not Path(f"/proc/{pid}").exists(), "a check outlived its server"
    assert "did not answer in 0.3s; killed" in server.log()


def test_a_check_of_a_label_the_worker_lacks_is_refused_at_start(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "JOBDOCK_HOME": str(tmp_path),
        "JOBDOCK_LABEL_CHECKS": json.dumps({"gpu": "true"}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "jobdock", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "label_checks: 'gpu' is not one of this worker's labels" in result.stderr
