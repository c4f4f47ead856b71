"""``jobdock run --at``, ``schedule`` and ``prune`` as a user types them."""

from __future__ import annotations

import json
import time

from test_cli import jobdock

from support import ServerProcess


def test_run_at_a_relative_time_waits_then_runs(server: ServerProcess) -> None:
    submitted = time.time()
    result = jobdock(server, "run", "--at", "+1s", "--priority", "5", "--", "echo", "later")

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"later\n"
    assert time.time() - submitted >= 1.0


def test_run_detached_at_a_time_is_scheduled(server: ServerProcess) -> None:
    result = jobdock(
        server, "run", "-d", "--at", "2099-12-01T10:00:00+01:00", "--retries", "2", "--", "true"
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.decode().strip()

    record = json.loads(jobdock(server, "inspect", job_id).stdout)
    assert record["state"] == "scheduled"
    assert record["spec"]["run_at"] == "2099-12-01T10:00:00+01:00"
    assert record["spec"]["retry"]["max_attempts"] == 3
    assert jobdock(server, "stop", job_id).returncode == 0


def test_bad_at_values_are_one_line_and_exit_2(server: ServerProcess) -> None:
    for value in ("tomorrow", "2099-12-01T10:00:00", "+ten"):
        result = jobdock(server, "run", "--at", value, "--", "true")
        assert result.returncode == 2, value
        assert result.stderr.decode().count("\n") == 1
        assert result.stderr.startswith(b"jobdock: --at:")


def test_a_past_time_is_refused_in_one_line_naming_allow_past(server: ServerProcess) -> None:
    result = jobdock(server, "run", "--at", "2001-01-01T00:00:00Z", "--", "true")
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1
    assert b"in the past" in result.stderr and b"--allow-past" in result.stderr


def test_allow_past_runs_a_job_at_a_past_time_at_once(server: ServerProcess) -> None:
    earlier = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - 3600))
    result = jobdock(server, "run", "--at", earlier, "--allow-past", "--", "echo", "now")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"now\n"


def test_run_help_lists_allow_past(server: ServerProcess) -> None:
    result = jobdock(server, "run", "--help")
    assert b"--allow-past" in result.stdout


def test_schedule_add_ls_pause_resume_rm(server: ServerProcess) -> None:
    name = f"cli-{time.time_ns() % 10**6}"
    added = jobdock(
        server,
        "schedule",
        "add",
        name,
        "--cron",
        "*/5 * * * *",
        "--tz",
        "Europe/Berlin",
        "--",
        "sh",
        "-c",
        "echo hi",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f"{name}: next at ".encode())

    listed = jobdock(server, "schedule", "ls")
    assert name.encode() in listed.stdout and b"Europe/Berlin" in listed.stdout
    assert jobdock(server, "schedule", "pause", name).returncode == 0
    assert jobdock(server, "schedule", "resume", name).returncode == 0
    assert jobdock(server, "schedule", "rm", name).returncode == 0
    missing = jobdock(server, "schedule", "rm", name)
    assert missing.returncode == 1
    assert missing.stderr.decode().count("\n") == 1


def test_schedule_add_with_a_bad_time_zone_is_one_line(server: ServerProcess) -> None:
    result = jobdock(
        server, "schedule", "add", "x", "--cron", "* * * * *", "--tz", "Nowhere", "--", "true"
    )
    assert result.returncode == 1
    assert result.stderr.startswith(b"jobdock: tz:")


def test_prune_reports_how_many_jobs_it_deleted(server: ServerProcess) -> None:
    result = jobdock(server, "prune", "--older-than", "30d")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"deleted ")
    assert jobdock(server, "prune", "--older-than", "soon").returncode == 2
