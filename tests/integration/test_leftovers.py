"""Every process a job starts ends with it, also one that left the job's
session: through the job's cgroup where the host has cgroups, and through
the worker as a child subreaper where it has none (``cgroups = "off"``)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobdock import Client, JobState
from support import ServerProcess, cgroups_missing, eventually


@pytest.fixture(scope="module", params=["cgroups", "no-cgroups"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    settings = {"cgroups": "off"} if request.param == "no-cgroups" else {}
    if request.param == "cgroups" and (why := cgroups_missing()) is not None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"cgroups are required in CI: {why}", pytrace=False)
        pytest.skip(why)
    server = ServerProcess(tmp_path_factory.mktemp(request.param), **settings).start()
    with Client(server.url) as c:
        yield c
    server.stop()


def _unique_sleep() -> str:
    """A sleep argument no other process has: found by it in /proc."""
    return f"300.{time.time_ns() % 10**9:09d}"


def _alive_with(argument: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            if argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
                if state != b"Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    "script",
    [
        "setsid sleep {arg} & exit 0",
        # Without the attempt's environment, and out of its session.
        "setsid env -i sleep {arg} & exit 0",
        # A double fork: the sleep's parent is gone before the job ends.
        "(setsid sleep {arg} &); exit 0",
    ],
    ids=["setsid", "setsid-no-env", "double-fork"],
)
def test_a_child_that_left_the_jobs_session_ends_with_the_job(client: Client, script: str) -> None:
    argument = _unique_sleep()

    job = client.run({"command": ["sh", "-c", script.format(arg=argument)]}).job

    assert job.state is JobState.SUCCEEDED
    eventually(lambda: not _alive_with(argument), timeout=10, what=f"sleep {argument} to end")


def test_another_jobs_child_outside_its_session_is_left_alone(client: Client) -> None:
    """Ending one job's leftovers takes nothing from a job still running."""
    argument = _unique_sleep()
    script = f"setsid sleep {argument} & echo started; exec sleep 60"
    running = client.submit({"command": ["sh", "-c", script], "kill_grace": 0.1})
    eventually(lambda: _alive_with(argument), timeout=30, what="the other job's child")

    client.run({"command": ["sh", "-c", "setsid sleep 1 & exit 0"]})

    assert _alive_with(argument), "the running job's child was killed"
    client.cancel(running.id)
    client.wait(running.id, timeout=30)
    eventually(lambda: not _alive_with(argument), timeout=10, what=f"sleep {argument} to end")
