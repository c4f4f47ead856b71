"""``jobdock logs --tail N --since 10m -t``, ``ps -w``, ``run --rm`` and the
status line of ``run`` and ``wait``, as users of ``docker`` type them,
against a served instance."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid

from support import ServerProcess, eventually

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


# -- ps -w -----------------------------------------------------------------------


def test_ps_watch_prints_the_list_again_when_a_job_comes_or_goes(server: ServerProcess) -> None:
    env = {**os.environ, "JOBDOCK_URL": server.url}
    watching = subprocess.Popen(
        [*JOBDOCK, "ps", "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watching.stdout.readline, b"")))  # type: ignore[union-attr]
    reader.start()
    try:
        eventually(lambda: any(b"JOB ID" in line for line in lines), timeout=30, what="a table")
        started = jobdock(server, "run", "-d", "--", "sleep", "60")
        job_id = started.stdout.decode().strip().encode()
        eventually(lambda: any(job_id in line for line in lines), timeout=30, what="the job")
        tables_with_it = sum(b"JOB ID" in line for line in lines)
        assert jobdock(server, "stop", "--now", job_id.decode()).returncode == 0

        def listed_without_it() -> bool:
            text = b"".join(lines)
            return (
                text.count(b"JOB ID") > tables_with_it and job_id not in text.split(b"JOB ID")[-1]
            )

        eventually(listed_without_it, timeout=30, what="the list again, without the job")
        # Not a terminal: nothing changed, nothing printed again.
        assert b"\x1b" not in b"".join(lines)
    finally:
        watching.send_signal(signal.SIGINT)
        code = watching.wait(30)
        reader.join(10)
    assert code == 0
    assert b"Traceback" not in watching.stderr.read()  # type: ignore[union-attr]


def test_ps_watch_redraws_the_list_on_a_terminal(server: ServerProcess) -> None:
    env = {**os.environ, "JOBDOCK_URL": server.url}
    main, child = pty.openpty()
    watching = subprocess.Popen([*JOBDOCK, "ps", "-w"], stdout=child, stderr=child, env=env)
    os.close(child)
    try:
        seen = read_until(main, b"JOB ID")
        seen += read_until(main, b"\x1b[2J", seen.count(b"\x1b[2J") + 2)
    finally:
        watching.send_signal(signal.SIGINT)
        assert watching.wait(30) == 0
        os.close(main)
    assert seen.count(b"JOB ID") >= 2


# -- run --rm --------------------------------------------------------------------


def test_run_rm_deletes_the_job_after_printing_its_output(server: ServerProcess) -> None:
    name, kept = f"rm-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"

    removed = jobdock(server, "run", "--rm", "--name", name, "--", "sh", "-c", "echo hi; exit 3")
    jobdock(server, "run", "--name", kept, "--", "true")

    assert (removed.returncode, removed.stdout, removed.stderr) == (3, b"hi\n", b"")
    assert jobdock(server, "ps", "-a", "-q", "--name", name).stdout == b""
    assert jobdock(server, "ps", "-a", "-q", "--name", kept).stdout.strip() != b""


def test_run_rm_with_detach_is_a_usage_error(server: ServerProcess) -> None:
    result = jobdock(server, "run", "--rm", "-d", "--", "true")

    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1 and "--rm" in result.stderr.decode()


# -- the status line of run and wait ---------------------------------------------


def read_until(fd: int, needle: bytes, count: int = 1, timeout: float = 30) -> bytes:
    """What a terminal shows until ``needle`` has appeared ``count`` times."""
    seen = b""
    deadline = time.monotonic() + timeout
    while seen.count(needle) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {needle!r}; saw {seen!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:  # the other side closed
                break
            if not data:
                break
            seen += data
    return seen


def test_wait_shows_a_status_line_on_a_terminal_while_the_job_is_scheduled(
    server: ServerProcess,
) -> None:
    job_id = jobdock(server, "run", "-d", "--at", "+1h", "--", "true").stdout.decode().strip()
    env = {**os.environ, "JOBDOCK_URL": server.url}
    main, child = pty.openpty()
    waiting = subprocess.Popen(
        [*JOBDOCK, "wait", job_id], stdout=subprocess.PIPE, stderr=child, env=env
    )
    os.close(child)
    try:
        shown = read_until(main, b"scheduled to start in")
        assert jobdock(server, "stop", job_id).returncode == 0
        code = waiting.wait(30)
        shown += read_until(main, b"never printed")  # to the end
    finally:
        os.close(main)
    assert re.search(rf"job {job_id} scheduled to start in (59|60)m".encode(), shown), shown
    assert shown.endswith(b"\r\x1b[K")  # and the line is gone once it ended
    assert code != 0


def test_run_and_wait_are_silent_when_stderr_is_not_a_terminal(server: ServerProcess) -> None:
    job_id = jobdock(server, "run", "-d", "--at", "+1h", "--", "true").stdout.decode().strip()

    waited = jobdock(server, "wait", "--timeout", "2s", job_id)

    assert waited.returncode == 124
    assert waited.stderr == f"jobdock: job {job_id} is still scheduled\n".encode()
    jobdock(server, "stop", job_id)
