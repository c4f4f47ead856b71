"""What a new user meets in the first hour: no server yet, where the
dashboard is, help that shows its defaults, suggestions that name real
commands (issue 21)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import ServerProcess, eventually, free_port

JOBDOCK = [sys.executable, "-m", "jobdock"]
WEB = Path(__file__).parents[2] / "src" / "jobdock" / "web"


def jobdock(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if url is not None:
        env["JOBDOCK_URL"] = url
    return subprocess.run([*JOBDOCK, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(("args", "code"), [(("ps",), 1), (("run", "--", "true"), 125)])
def test_a_call_to_no_server_says_to_start_jobdock_serve(args: tuple[str, ...], code: int) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = jobdock(*args, url=url)

    assert result.returncode == code
    assert result.stderr == (
        f"jobdock: no jobdock server answers at {url} "
        "(start one with 'jobdock serve', or set --url / JOBDOCK_URL)\n"
    )


def test_serve_says_where_the_dashboard_is(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", log_level="info").start()
    try:
        line = f"dashboard: {server.url}/ui"
        eventually(lambda: line in server.log(), what="the dashboard's address in the log")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (("logs",), "Attempt number [latest]."),
        (("schedule", "add"), "weekday [second])."),
        (("tokens", "create"), "12h [never]."),
        (("serve",), "Store URL [sqlite:///$JOBDOCK_HOME/jobdock.db]."),
    ],
)
def test_help_shows_bracketed_defaults(command: tuple[str, ...], text: str) -> None:
    result = jobdock(*command, "--help")

    assert result.returncode == 0, result.stderr
    assert text in " ".join(re.sub(r"[│]", " ", result.stdout).split())


def test_the_empty_schedules_page_names_a_real_command() -> None:
    page = (WEB / "schedules.js").read_text()
    suggested = re.search(r"Add one with jobdock ([a-z ]+?) \(", page)
    assert suggested is not None, "the empty page suggests no command"

    result = jobdock(*suggested.group(1).split(), "--help")

    assert result.returncode == 0, result.stderr
