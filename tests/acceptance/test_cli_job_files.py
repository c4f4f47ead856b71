"""Job files (issue 19): ``jobdock run -f FILE`` with the variables the file
declares and ``--set`` overrides, errors that name the file, line and
field; the same file with ``--local`` (no server) gives the same result;
``jobdock export`` writes a job back out as a file, a shell or docker line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import ServerProcess

JOB_FILE = """\
# a CI step, kept next to the code
variables:
  GREETING: hello
  WHO: null        # the caller sets it
command: [sh, -c, 'echo "${GREETING} ${WHO} in $$PWD"; echo warn >&2; exit 3']
timeout: 1m
labels:
  team: ci
"""


def jobdock(
    server: ServerProcess | None, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JOBDOCK_")}
    environment |= {"COLUMNS": "200", **env}
    if server is not None:
        environment["JOBDOCK_URL"] = server.url
    return subprocess.run(
        [sys.executable, "-m", "jobdock", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "ci.yaml").write_text(JOB_FILE)
    return tmp_path


def test_a_job_file_runs_with_its_variables_from_the_environment(
    server: ServerProcess, project: Path
) -> None:
    done = jobdock(server, project, "run", "-f", "ci.yaml", WHO="world")

    assert (done.returncode, done.stdout, done.stderr) == (
        3,
        f"hello world in {project}\n",
        "warn\n",
    )


def test_the_same_file_runs_alike_with_local_and_no_server(
    server: ServerProcess, project: Path
) -> None:
    on_server = jobdock(server, project, "run", "-f", "ci.yaml", WHO="w")
    local = jobdock(
        None, project, "run", "-f", "ci.yaml", "--local", WHO="w", JOBDOCK_URL="http://127.0.0.1:9"
    )

    assert (
        (local.returncode, local.stdout, local.stderr)
        == (
            on_server.returncode,
            on_server.stdout,
            on_server.stderr,
        )
        == (3, f"hello w in {project}\n", "warn\n")
    )


def test_set_and_options_override_the_files_fields(server: ServerProcess, project: Path) -> None:
    done = jobdock(
        server,
        project,
        "run",
        "-d",
        "-f",
        "ci.yaml",
        "--set",
        "labels.stage=2",
        "--set",
        "resources.memory=64m",
        "-l",
        "team=qa",
        "--",
        "echo",
        "from-args",
        WHO="w",
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(jobdock(server, project, "inspect", done.stdout.strip()).stdout)

    assert job["spec"]["command"] == ["echo", "from-args"]
    assert job["labels"] == {"team": "qa", "stage": "2"}
    assert job["spec"]["resources"]["memory"] == 64 * 1024 * 1024
    assert job["spec"]["timeout"] == 60


@pytest.mark.parametrize(
    ("text", "args", "env", "message"),
    [
        (JOB_FILE, (), {}, "ci.yaml:4: variable WHO has no default and is not set"),
        (
            "command: [echo, '${NOPE}']\n",
            (),
            {},
            "ci.yaml:1: command.1: ${NOPE} is not declared under variables",
        ),
        (
            "command: [echo]\nresources:\n  memory: lots\n",
            (),
            {},
            "ci.yaml:3: resources.memory: 'lots' is not a size",
        ),
        ("command: [echo]\ntimeot: 5\n", (), {}, "ci.yaml:2: timeot: unknown field"),
        (
            "command: [echo]\n",
            ("--set", "timeout=abc"),
            {},
            "--set: timeout: 'abc' is not a duration",
        ),
        ("command: [echo\n", (), {}, "ci.yaml is not valid YAML"),
        ("- echo\n", (), {}, "ci.yaml: a job file is a mapping of job spec fields"),
    ],
)
def test_a_bad_job_file_is_one_line_naming_file_line_and_field(
    server: ServerProcess,
    tmp_path: Path,
    text: str,
    args: tuple[str, ...],
    env: dict[str, str],
    message: str,
) -> None:
    (tmp_path / "ci.yaml").write_text(text)

    done = jobdock(server, tmp_path, "run", "-f", "ci.yaml", *args, **env)

    assert done.returncode == 2
    assert done.stderr.startswith(f"jobdock: {message}"), done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_export_writes_a_job_file_that_runs_the_same_job(
    server: ServerProcess, project: Path
) -> None:
    first = jobdock(server, project, "run", "-d", "-f", "ci.yaml", WHO="x")
    job_id = first.stdout.strip()
    jobdock(server, project, "wait", job_id)

    exported = jobdock(server, project, "export", job_id)
    (project / "again.yaml").write_text(exported.stdout)
    again = jobdock(server, project, "run", "-f", "again.yaml")
    shell = jobdock(server, project, "export", job_id, "--format", "shell")
    docker = jobdock(server, project, "export", job_id, "--format", "docker")

    assert exported.returncode == 0 and "variables" not in exported.stdout
    assert (again.returncode, again.stdout) == (3, f"hello x in {project}\n")
    assert shell.stdout.startswith(f"cd {project} && timeout --kill-after=10s 60s sh -c ")
    shell_run = subprocess.run(shell.stdout, shell=True, capture_output=True, text=True)
    assert (shell_run.returncode, shell_run.stdout) == (3, f"hello x in {project}\n")
    assert docker.returncode == 2
    assert docker.stderr == f"jobdock: job {job_id} is a process job: use --format shell\n"
