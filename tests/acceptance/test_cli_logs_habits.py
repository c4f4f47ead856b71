"""``jobdock logs --tail N --since 10m -t``, ``ps -w``, ``run --rm`` and the
status line of ``run`` and ``wait``, as users of ``docker`` type them,
against a served instance."""

from __future__ import annotations

import re
import sys

from support import ServerProcess

JOBDOCK = [sys.executable, "-m", "jobdock"]
_TIME = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"

from test_cli import jobdock  # noqa: E402  (the one way these tests call the CLI)


def finished_job(server: ServerProcess, script: str) -> str:
    started = jobdock(server, "run", "-d", "--", "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.decode().strip()
    assert jobdock(server, "wait", job_id).returncode == 0
    return job_id


def test_logs_tail_prints_the_last_lines(server: ServerProcess) -> None:
    job_id = finished_job(server, "seq 1 10")

    result = jobdock(server, "logs", "--tail", "3", job_id)
    short = jobdock(server, "logs", "-n", "1", job_id)

    assert (result.returncode, result.stdout, result.stderr) == (0, b"8\n9\n10\n", b"")
    assert short.stdout == b"10\n"


def test_logs_timestamps_prefix_each_line_with_its_arrival_time(server: ServerProcess) -> None:
    job_id = finished_job(server, "echo out; echo err >&2")

    result = jobdock(server, "logs", "-t", job_id)

    assert result.returncode == 0
    assert re.fullmatch(_TIME + rb" out\n", result.stdout), result.stdout
    assert re.fullmatch(_TIME + rb" err\n", result.stderr), result.stderr


def test_logs_since_prints_only_recent_output_with_tail_and_timestamps(
    server: ServerProcess,
) -> None:
    job_id = finished_job(server, "seq 1 5")

    recent = jobdock(server, "logs", "--since", "10m", "--tail", "2", "-t", job_id)
    future = jobdock(server, "logs", "--since", "99999999999", job_id)

    assert recent.returncode == 0
    assert re.fullmatch(_TIME + rb" 4\n" + _TIME + rb" 5\n", recent.stdout), recent.stdout
    assert (future.returncode, future.stdout) == (0, b"")


def test_a_bad_since_or_tail_is_one_line_and_an_exit_code(server: ServerProcess) -> None:
    job_id = finished_job(server, "true")

    since = jobdock(server, "logs", "--since", "yesterday", job_id)
    tail = jobdock(server, "logs", "--tail", "-2", job_id)

    assert since.returncode == 1
    assert since.stderr.decode().count("\n") == 1 and "since" in since.stderr.decode()
    assert "yesterday" in since.stderr.decode()
    assert tail.returncode == 2
    assert b"Traceback" not in tail.stderr
