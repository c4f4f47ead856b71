"""What Jobrunner's users type, as jobdock takes it: ``run --require``,
``flow run --dry-run`` (Jobrunner's ``post --hierarchy``) and the live
``flow list --watch`` / ``flow show --watch``, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import jobdock

from jobdock import Client
from support import ServerProcess, eventually


@pytest.fixture(scope="module")
def zoned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose worker offers the label zone=a."""
    server = ServerProcess(tmp_path_factory.mktemp("zoned"), labels='{"zone": "a"}').start()
    yield server
    server.stop()


# -- run --require -----------------------------------------------------------------------


def test_run_require_runs_on_a_worker_with_the_label(zoned: ServerProcess) -> None:
    result = jobdock(zoned, "run", "--require", "zone=a", "--", "echo", "in zone a")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"in zone a\n"


def test_run_require_waits_while_no_worker_has_the_label(zoned: ServerProcess) -> None:
    result = jobdock(
        zoned, "run", "-d", "--require", "zone=b", "--require", "disk=ssd", "--", "true"
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.decode().strip()
    with Client(zoned.url) as client:
        job = client.get(job_id)
        assert job.spec.requires == {"zone": "b", "disk": "ssd"}
        # A job submitted after it runs: the worker left this one queued.
        assert client.wait(client.submit({"command": ["true"]}).id, timeout=30).exit_code == 0
        job = client.get(job_id)
        assert job.state.value == "queued"
        assert job.waiting_reason is not None and "zone" in job.waiting_reason
        client.cancel(job_id)


def test_run_require_that_is_not_key_value_is_one_line_and_exit_2(zoned: ServerProcess) -> None:
    result = jobdock(zoned, "run", "--require", "zone", "--", "true")
    assert result.returncode == 2
    assert result.stderr == b"jobdock: --require 'zone' is not KEY=VALUE\n"
