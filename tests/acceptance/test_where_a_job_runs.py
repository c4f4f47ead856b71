"""Where a job runs (issue 21): ``jobdock run`` against a server on this
machine runs the job in the caller's directory, as a shell would, with the
HOME of the user it runs as; against a remote server it sends no directory.
A missing program or working directory says which directory it was."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess

SCRIPT = '#!/bin/sh\necho "ran in $(pwd) with HOME=$HOME"\n'


def jobdock(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI run from ``cwd``, as a user in that directory would."""
    env = {**os.environ, "JOBDOCK_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "jobdock", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


#: How long a server may take to start on a machine loaded by other test runs.
START_SECONDS = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server on loopback, the default: the CLI is on its machine."""
    proc = ServerProcess(tmp_path_factory.mktemp("server"))
    proc.launch().wait_healthy(timeout=START_SECONDS)
    yield proc
    proc.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory holding an executable script.sh."""
    directory = tmp_path / "proj"
    directory.mkdir()
    script = directory / "script.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    return directory


def test_run_runs_a_script_of_the_callers_directory_there(
    server: ServerProcess, project: Path
) -> None:
    result = jobdock("run", "--", "./script.sh", url=server.url, cwd=project)

    assert result.returncode == 0, result.stderr
    home = pwd.getpwuid(os.getuid()).pw_dir
    assert result.stdout == f"ran in {project} with HOME={home}\n"


def test_a_relative_workdir_is_taken_from_the_callers_directory(
    server: ServerProcess, project: Path
) -> None:
    (project / "sub").mkdir()

    result = jobdock("run", "-w", "sub", "--", "pwd", url=server.url, cwd=project)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{project / 'sub'}\n"


def test_a_missing_program_names_the_working_directory(
    server: ServerProcess, project: Path
) -> None:
    result = jobdock("run", "--", "./x", url=server.url, cwd=project)

    assert result.returncode == 127
    assert result.stderr == (
        f"jobdock: cannot run './x': No such file or directory (working directory {project})\n"
    )


def test_a_missing_working_directory_is_named_as_such(server: ServerProcess, project: Path) -> None:
    missing = project / "nope"

    result = jobdock("run", "-w", str(missing), "--", "true", url=server.url, cwd=project)

    assert result.returncode == 127
    assert result.stderr == f"jobdock: working directory {missing} does not exist\n"


def test_a_schedule_added_here_runs_here(server: ServerProcess, project: Path) -> None:
    added = jobdock(
        "schedule", "add", "here", "--cron", "0 3 * * *", "--", "./script.sh",
        url=server.url, cwd=project,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    schedule = httpx.get(f"{server.url}/v1/schedules/here", timeout=10).json()
    assert schedule["job"]["cwd"] == str(project)


def _public_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") else address


def test_a_remote_server_gets_no_working_directory(tmp_path: Path, project: Path) -> None:
    address = _public_address()
    if address is None:
        pytest.skip("this machine has no address beyond loopback")
    remote = ServerProcess(tmp_path / "home", args=("--host", address, "--insecure"))
    remote.url = f"http://{address}:{remote.port}"
    remote.launch().wait_healthy(timeout=START_SECONDS)
    try:
        result = jobdock("run", "--", "pwd", url=remote.url, cwd=project)
    finally:
        remote.stop()

    assert result.returncode == 0, result.stderr
    assert result.stdout == "/\n"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None, reason="needs root and bubblewrap"
)
def test_a_read_only_job_in_a_directory_under_tmp_is_told_why(
    server: ServerProcess, tmp_path: Path
) -> None:
    result = jobdock("run", "--readonly", "--", "true", url=server.url, cwd=tmp_path)

    assert result.returncode == 127
    assert result.stderr == (
        f"jobdock: working directory {tmp_path} is under /tmp, which a read-only job "
        "has its own of\n"
    )
