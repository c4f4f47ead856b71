"""The ``jobdock`` command as a user types it, against a served instance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import ServerProcess, eventually, free_port

JOBDOCK = [sys.executable, "-m", "jobdock"]


def jobdock(
    server: ServerProcess | None, *args: str, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ}
    env["JOBDOCK_URL"] = server.url if server else f"http://127.0.0.1:{free_port()}"
    return subprocess.run(
        [*JOBDOCK, *args], input=stdin, capture_output=True, env=env, timeout=timeout
    )


def test_run_prints_the_jobs_streams_and_exits_with_its_code(server: ServerProcess) -> None:
    result = jobdock(server, "run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"


def test_run_takes_options_env_workdir_name_and_labels(
    server: ServerProcess, tmp_path: Path
) -> None:
    result = jobdock(
        server,
        "run",
        "-e",
        "WHO=world",
        "-w",
        str(tmp_path),
        "--name",
        "greeter",
        "-l",
        "team=a",
        "--",
        "sh",
        "-c",
        'echo "hello $WHO from $(pwd)"',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hello world from {tmp_path}\n".encode()


def test_run_interactive_sends_stdin(server: ServerProcess) -> None:
    result = jobdock(server, "run", "-i", "--", "wc", "-c", stdin=b"data\n")
    assert result.returncode == 0
    assert result.stdout.strip() == b"5"


def test_detached_run_then_ps_inspect_logs_stop_and_wait(server: ServerProcess) -> None:
    started = jobdock(
        server, "run", "-d", "--name", "sleepy", "--", "sh", "-c", "echo up; exec sleep 30"
    )
    assert started.returncode == 0
    job_id = started.stdout.decode().strip()
    assert len(job_id) == 16

    def listed() -> bool:
        ps = jobdock(server, "ps")
        return job_id in ps.stdout.decode() and "running" in ps.stdout.decode()

    eventually(listed, what="the job in `jobdock ps`")
    assert job_id in jobdock(server, "ps", "-q").stdout.decode().split()

    record = json.loads(jobdock(server, "inspect", job_id).stdout)
    assert record["id"] == job_id and record["name"] == "sleepy"
    assert record["spec"]["command"] == ["sh", "-c", "echo up; exec sleep 30"]

    eventually(lambda: jobdock(server, "logs", job_id).stdout == b"up\n", what="output")
    stopped = jobdock(server, "stop", job_id)
    assert stopped.returncode == 0
    assert stopped.stdout.decode().strip() == job_id
    assert json.loads(jobdock(server, "inspect", job_id).stdout)["state"] == "cancelled"
    assert jobdock(server, "wait", job_id).returncode == 128 + 15
    assert job_id not in jobdock(server, "ps").stdout.decode()
    assert job_id in jobdock(server, "ps", "-a").stdout.decode()

    again = jobdock(server, "stop", job_id)
    assert again.returncode == 0
    assert b"already finished" in again.stderr


def test_logs_follow_streams_until_the_job_ends(server: ServerProcess) -> None:
    job_id = (
        jobdock(
            server,
            "run",
            "-d",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3; do echo $i; sleep 0.2; done; echo bye >&2",
        )
        .stdout.decode()
        .strip()
    )
    followed = jobdock(server, "logs", "-f", job_id)
    assert followed.returncode == 0
    assert followed.stdout == b"1\n2\n3\n"
    assert followed.stderr == b"bye\n"
    only_err = jobdock(server, "logs", "--stream", "stderr", job_id)
    assert (only_err.stdout, only_err.stderr) == (b"", b"bye\n")


def test_wait_exits_with_the_jobs_exit_code(server: ServerProcess) -> None:
    job_id = jobdock(server, "run", "-d", "--", "sh", "-c", "exit 7").stdout.decode().strip()
    assert jobdock(server, "wait", job_id).returncode == 7


def test_a_timeout_exits_124_and_says_so(server: ServerProcess) -> None:
    result = jobdock(server, "run", "--timeout", "300ms", "--kill-grace", "1s", "--", "sleep", "30")
    assert result.returncode == 124
    assert b"timed out" in result.stderr


def test_a_command_that_cannot_start_exits_127_with_one_line(server: ServerProcess) -> None:
    result = jobdock(server, "run", "--", "no-such-program-jobdock")
    assert result.returncode == 127
    assert result.stderr.decode().count("\n") == 1
    assert "no-such-program-jobdock" in result.stderr.decode()


def test_ctrl_c_on_run_stops_the_job(server: ServerProcess) -> None:
    env = {**os.environ, "JOBDOCK_URL": server.url}
    proc = subprocess.Popen(
        [*JOBDOCK, "run", "--", "sh", "-c", "echo started; exec sleep 30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + 15
    assert b"stopping job" in err


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["inspect", "0123456789abcdef"], 1, "no job with id"),
        (["logs", "0123456789abcdef"], 1, "no job with id"),
        (["wait", "0123456789abcdef"], 125, "no job with id"),
        (["run", "-e", "NOEQUALS", "--", "true"], 2, "--env"),
        (["run", "--timeout", "soon", "--", "true"], 2, "--timeout"),
        (["run", "--", ""], 125, "command"),
        (["ps", "--state", "sleeping"], 2, "--state"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_an_exit_code(
    server: ServerProcess, args: list[str], code: int, needle: str
) -> None:
    result = jobdock(server, *args)
    assert result.returncode == code
    err = result.stderr.decode()
    assert needle in err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    result = jobdock(None, "ps")
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "no jobdock server answers at" in err and "jobdock serve" in err
    assert err.count("\n") == 1


def test_serve_then_run_from_a_fresh_home(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "fresh").start()
    started = time.monotonic()
    result = jobdock(server, "run", "--", "echo", "hello")
    server.stop()
    assert result.stdout == b"hello\n"
    assert time.monotonic() - started < 30
    assert (tmp_path / "fresh" / "jobdock.db").exists()


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (["serve", "--db", "mysql://x/y"], "unsupported store URL"),
        (["worker", "--db", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the store"),
    ],
)
def test_a_store_that_cannot_be_opened_is_one_line(
    tmp_path: Path, command: list[str], needle: str
) -> None:
    env = {**os.environ, "JOBDOCK_HOME": str(tmp_path), "JOBDOCK_PORT": str(free_port())}
    result = subprocess.run(
        [*JOBDOCK, *command], capture_output=True, env=env, timeout=60, text=True
    )
    assert result.returncode == 1
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_run_takes_limits_and_inspect_shows_them(server: ServerProcess) -> None:
    result = jobdock(
        server, "run", "-d", "--memory", "64m", "--pids", "32", "--output-limit", "1k", "--", "true"
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.decode().strip()
    jobdock(server, "wait", job_id)

    record = json.loads(jobdock(server, "inspect", job_id).stdout)

    resources = {k: v for k, v in record["spec"]["resources"].items() if v is not None}
    assert resources == {"memory": 64 << 20, "pids": 32}
    assert record["spec"]["output_limit"] == 1024
    attempt = record["attempts"][0]
    assert {"isolation", "limits", "peak_memory", "cpu_seconds"} <= attempt.keys()


def test_run_with_a_bad_limit_is_one_line_on_stderr(server: ServerProcess) -> None:
    result = jobdock(server, "run", "--memory", "lots", "--", "true")

    assert result.returncode != 0
    assert result.stderr.decode().count("\n") == 1
    assert "resources.memory" in result.stderr.decode()


def test_run_network_and_user_are_the_containers_with_image_else_the_isolations(
    tmp_path: Path,
) -> None:
    # No worker: the jobs stay queued, their specs are what the CLI built.
    server = ServerProcess(tmp_path, args=("--no-worker",)).start()
    try:
        common = ("run", "-d", "--network", "none", "--user", "1000", "--cpus", "1")
        process = jobdock(server, *common, "--", "true")
        image = jobdock(server, *common, "--image", "busybox", "--", "true")
        specs = [
            json.loads(jobdock(server, "inspect", result.stdout.decode().strip()).stdout)["spec"]
            for result in (process, image)
        ]
    finally:
        server.stop()

    assert process.returncode == 0 and image.returncode == 0, (process.stderr, image.stderr)
    process_spec, image_spec = specs
    assert process_spec["isolation"]["network"] == "none"
    assert process_spec["isolation"]["user"] == "1000"
    assert (process_spec["network"], process_spec["user"]) == (None, None)
    assert (image_spec["network"], image_spec["user"], image_spec["isolation"]) == (
        "none",
        "1000",
        None,
    )
    assert process_spec["resources"]["cpus"] == image_spec["resources"]["cpus"] == 1


@pytest.mark.parametrize(
    "flag",
    [
        ["--isolate"],
        ["--no-isolate"],
        ["--group", "users"],
        ["--readonly"],
        ["--rootfs", "/srv/root"],
        ["--io-read-bps", "1m"],
        ["--io-write-bps", "1m"],
    ],
)
def test_a_process_only_flag_with_image_is_a_usage_error(flag: list[str]) -> None:
    result = jobdock(None, "run", "--image", "busybox", *flag, "--", "true")

    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert stderr.count("\n") == 1, stderr
    assert f"{flag[0]} applies to process jobs only" in stderr
