"""``jobdock serve`` as it starts: one server per home (a second refuses
before it touches the store, and a killed one never blocks the next), and
one log format for all its lines, uvicorn's included."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from support import ServerProcess, free_port

#: jobdock's log line: time, level, logger, message.
LOG_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S"
)


#: Starting a server on a busy machine may take a while.
START_TIMEOUT = 90.0


def _started(server: ServerProcess) -> ServerProcess:
    return server.launch().wait_healthy(timeout=START_TIMEOUT)


def _second_serve(first: ServerProcess, db: Path) -> subprocess.CompletedProcess[str]:
    """``jobdock serve`` on ``first``'s home, on a port of its own and the store ``db``."""
    env = {**first.env, "JOBDOCK_PORT": str(free_port()), "JOBDOCK_DB": f"sqlite:///{db}"}
    return subprocess.run(
        [sys.executable, "-m", "jobdock", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_serve_on_the_same_home_refuses_before_it_opens_a_store(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    first = _started(ServerProcess(home))
    try:
        second = _second_serve(first, tmp_path / "second.db")

        assert second.returncode == 2
        assert first.proc is not None
        assert second.stderr == (
            f"jobdock: another jobdock serve (pid {first.proc.pid}) is running on the home "
            f"{home}; stop it, or give this one a home of its own (--home or JOBDOCK_HOME)\n"
        )
        assert not (tmp_path / "second.db").exists(), "it opened the store"
        assert httpx.get(f"{first.url}/healthz").status_code == 200, "the first one serves on"
    finally:
        first.stop()


def test_once_the_first_serve_is_killed_a_new_one_starts_on_its_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _started(ServerProcess(home))
    assert _second_serve(first, tmp_path / "second.db").returncode == 2

    first.stop(signal.SIGKILL)
    after_kill = _started(ServerProcess(home))
    try:
        assert httpx.get(f"{after_kill.url}/healthz").status_code == 200
    finally:
        after_kill.stop()


def test_every_line_serve_logs_has_jobdocks_one_format(tmp_path: Path) -> None:
    server = _started(ServerProcess(tmp_path / "home", log_level="info"))
    try:
        job = httpx.post(f"{server.url}/v1/jobs", json={"command": ["true"]}).json()
        httpx.get(f"{server.url}/v1/jobs/{job['id']}/wait", params={"timeout": 10})
    finally:
        server.stop()
    lines = server.log().splitlines()

    assert any(" INFO uvicorn: Application startup complete" in line for line in lines)
    assert [line for line in lines if not LOG_LINE.match(line)] == []
