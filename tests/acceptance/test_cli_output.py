"""What the listing commands print, as docker and kubectl users expect:
``-o json|yaml|wide``, plain tab-separated lines into a pipe, state colours
on a terminal only (never with NO_COLOR), jobs by name or id prefix, and
``describe`` for people (a real server; a pseudo-terminal where it matters)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid

import pytest
import yaml

from jobdock import Client
from support import ServerProcess, eventually

#: A colour (foreground 30-37 or 90-97) in an ANSI SGR sequence.
COLOUR = re.compile(r"\x1b\[(?:\d+;)*(?:3[0-7]|9[0-7])(?:;\d+)*m")


def cli(server: ServerProcess, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "JOBDOCK_URL": server.url}
    done = subprocess.run(
        [sys.executable, "-m", "jobdock", *args], capture_output=True, env=env, timeout=60
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def on_terminal(server: ServerProcess, *args: str, no_color: str | None = None) -> str:
    """What ``jobdock ARGS`` writes to a 200-column terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env |= {"JOBDOCK_URL": server.url, "TERM": "xterm", "COLUMNS": "200"}
    if no_color is not None:
        env["NO_COLOR"] = no_color
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobdock", *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not data:
                break
            output += data
    finally:
        os.close(master)
        proc.wait(timeout=10)
    return output.decode()


def submitted(server: ServerProcess, *command: str, name: str | None = None) -> str:
    """The id of a finished job that ran ``command``."""
    with Client(server.url) as client:
        job = client.submit({"command": list(command), "name": name or f"j-{uuid.uuid4().hex}"})
        client.wait(job.id, timeout=30)
    return job.id


def test_ps_into_a_pipe_prints_tab_separated_lines_with_an_image_column(
    server: ServerProcess,
) -> None:
    name = f"piped-{uuid.uuid4().hex[:8]}"
    long_arg = "x" * 150
    job_id = submitted(server, "echo", long_arg, name=name)

    code, out, _ = cli(server, "ps", "-a", "--name", name)

    assert code == 0
    assert "\x1b" not in out and "│" not in out and "─" not in out
    header, row = out.splitlines()
    assert header.split("\t") == ["JOB ID", "NAME", "IMAGE", "COMMAND", "CREATED", "STATUS"]
    cells = row.split("\t")
    assert cells[:3] == [job_id, name, ""], "one line, the image empty for a process job"
    assert cells[5].startswith("succeeded (exit 0)")


def test_ps_inspect_workers_schedules_and_flows_print_json_and_yaml(
    server: ServerProcess,
) -> None:
    name = f"doc-{uuid.uuid4().hex[:8]}"
    job_id = submitted(server, "true", name=name)
    schedule = f"yearly-{uuid.uuid4().hex[:8]}"
    assert cli(server, "schedule", "add", schedule, "--cron", "0 0 1 1 *", "--", "true")[0] == 0
    try:
        code, out, _ = cli(server, "ps", "-a", "--name", name, "-o", "json")
        assert code == 0 and [job["id"] for job in json.loads(out)] == [job_id]
        code, out, _ = cli(server, "ps", "-a", "--name", name, "-o", "yaml")
        assert code == 0 and [job["id"] for job in yaml.safe_load(out)] == [job_id]
        code, out, _ = cli(server, "inspect", job_id, "-o", "yaml")
        record = yaml.safe_load(out)
        assert (code, record["id"], record["state"]) == (0, job_id, "succeeded")
        code, out, _ = cli(server, "workers", "-o", "json")
        assert code == 0 and json.loads(out)[0]["state"] == "alive"
        code, out, _ = cli(server, "schedule", "ls", "-o", "yaml")
        assert code == 0 and schedule in [item["name"] for item in yaml.safe_load(out)]
        code, out, _ = cli(server, "flow", "list", "-a", "-o", "json")
        assert code == 0 and isinstance(json.loads(out), list)
    finally:
        cli(server, "schedule", "rm", schedule)


def test_o_wide_adds_columns(server: ServerProcess) -> None:
    name = f"wide-{uuid.uuid4().hex[:8]}"
    submitted(server, "echo", "y" * 60, name=name)

    code, out, _ = cli(server, "ps", "-a", "--name", name, "-o", "wide")

    header, row = out.splitlines()
    assert code == 0 and header.split("\t")[6:] == ["OWNER", "ATTEMPT", "LABELS"]
    assert row.split("\t")[3] == "echo " + "y" * 60, "the whole command"
    code, out, _ = cli(server, "workers", "-o", "wide")
    assert code == 0 and out.splitlines()[0].split("\t")[-2:] == ["HOST", "JOBS"]


@pytest.mark.parametrize(
    "args", [("ps", "-o", "xml"), ("inspect", "0123456789abcdef", "-o", "wide")]
)
def test_an_unknown_output_format_is_one_line_and_exit_2(
    server: ServerProcess, args: tuple[str, ...]
) -> None:
    code, out, err = cli(server, *args)
    assert (code, out) == (2, "")
    assert err.startswith("jobdock: -o ") and err.count("\n") == 1


def test_states_are_coloured_on_a_terminal_but_not_with_no_color(server: ServerProcess) -> None:
    name = f"colour-{uuid.uuid4().hex[:8]}"
    submitted(server, "false", name=name)

    coloured = on_terminal(server, "ps", "-a", "--name", name)
    plain = on_terminal(server, "ps", "-a", "--name", name, no_color="1")

    assert "\x1b[31mfailed (exit 1)" in coloured, "failed in red"
    assert "failed (exit 1)" in plain and not COLOUR.search(plain)
    assert "\t" not in plain, "a table, not tab-separated text"
    assert "IMAGE" in plain


def test_commands_take_a_name_or_an_id_prefix(server: ServerProcess) -> None:
    name = f"ref-{uuid.uuid4().hex[:8]}"
    with Client(server.url) as client:
        job = client.submit({"command": ["sh", "-c", "echo hi; exec sleep 60"], "name": name})
    prefix = job.id[:8]

    eventually(lambda: cli(server, "logs", name)[1] == "hi\n", 30, "the job's output by name")
    code, out, _ = cli(server, "inspect", prefix)
    assert (code, json.loads(out)["id"]) == (0, job.id)
    assert cli(server, "stop", name)[:2] == (0, f"{name}\n")
    assert cli(server, "wait", prefix)[0] == 128 + 15

    again = submitted(server, "true", name=name)
    code, out, err = cli(server, "describe", name)
    assert (code, out) == (1, "")
    assert "more than one job" in err and job.id in err and again in err
    assert err.count("\n") == 1


def test_describe_shows_a_jobs_fields_attempts_and_events(server: ServerProcess) -> None:
    name = f"described-{uuid.uuid4().hex[:8]}"
    with Client(server.url) as client:
        job = client.submit(
            {
                "command": ["sh", "-c", "exit 3"],
                "name": name,
                "labels": {"team": "a"},
                "retry": {"max_attempts": 2, "backoff": {"initial": 0.1}},
            }
        )
        assert client.wait(job.id, timeout=30).state.value == "failed"

    code, out, _ = cli(server, "describe", name)

    assert code == 0
    fields = dict(line.split(":", 1) for line in out.split("\n\n")[0].splitlines())
    assert fields["ID"].strip() == job.id and fields["Name"].strip() == name
    assert fields["State"].strip().startswith("failed (exit 3)")
    assert fields["Command"].strip() == "sh -c 'exit 3'" and fields["Labels"].strip() == "team=a"
    attempts = out.split("Attempts:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in attempts] == ["#", "1", "2"]
    assert all("exit 3" in line for line in attempts[1:])
    events = out.split("Events:\n")[1]
    for event in ("submitted", "attempt 1: exit 3", "attempt 2 started", "finished: failed"):
        assert event in events
