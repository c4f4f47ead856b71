"""What Jobrunner's users type, as jobdock takes it: ``run --require``,
``flow run --dry-run`` (Jobrunner's ``post --hierarchy``) and the live
``flow list --watch`` / ``flow show --watch``, against a real server."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli import jobdock

from jobdock import Client
from support import ServerProcess


@pytest.fixture(scope="module")
def zoned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose worker offers the label zone=a."""
    server = ServerProcess(tmp_path_factory.mktemp("zoned"), labels='{"zone": "a"}').start()
    yield server
    server.stop()


# -- run --require -----------------------------------------------------------------------


def test_run_require_runs_on_a_worker_with_the_label(zoned: ServerProcess) -> None:
    result = jobdock(zoned, "run", "--require", "zone=a", "--", "echo", "in zone a")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"in zone a\n"


def test_run_require_waits_while_no_worker_has_the_label(zoned: ServerProcess) -> None:
    result = jobdock(
        zoned, "run", "-d", "--require", "zone=b", "--require", "disk=ssd", "--", "true"
    )
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.decode().strip()
    with Client(zoned.url) as client:
        job = client.get(job_id)
        assert job.spec.requires == {"zone": "b", "disk": "ssd"}
        # A job submitted after it runs: the worker left this one queued.
        assert client.wait(client.submit({"command": ["true"]}).id, timeout=30).exit_code == 0
        job = client.get(job_id)
        assert job.state.value == "queued"
        assert job.waiting_reason is not None and "zone" in job.waiting_reason
        client.cancel(job_id)


def test_run_require_that_is_not_key_value_is_one_line_and_exit_2(zoned: ServerProcess) -> None:
    result = jobdock(zoned, "run", "--require", "zone", "--", "true")
    assert result.returncode == 2
    assert result.stderr == b"jobdock: --require 'zone' is not KEY=VALUE\n"


# -- flow run --dry-run ------------------------------------------------------------------

RELEASE = """\
name: release
params: {version: null}
concurrency: 2
steps:
  - name: build
    job: {command: [make, "VERSION={{ params.version }}"]}
    revert: {command: [make, clean]}
  - name: test-a
    needs: [build]
    job: {command: [sh, -c, "echo a"]}
  - name: test-b
    needs: [build]
    job: {call: "team.checks:run", args: {v: 1}}
  - name: deploy
    needs: [test-a, test-b]
    job: {command: [deploy, "{{ steps.test-b.output }}"]}
"""


def flow(
    server: ServerProcess | None, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    url = server.url if server is not None else "http://127.0.0.1:9"
    env = {**os.environ, "JOBDOCK_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "jobdock", "flow", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_dry_run_draws_the_step_graph_without_a_server(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(RELEASE)
    # No server answers at the URL: nothing is submitted.
    result = flow(None, "run", str(path), "--dry-run", "-p", "version=1.4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "release  4 steps, at most 2 at once",
        "└── build  make VERSION=1.4",
        "    ↩ revert: make clean",
        "    ├── test-a  sh -c 'echo a'",
        "    │   └── deploy  deploy '{{ steps.test-b.output }}'  (needs test-a, test-b)",
        "    └── test-b  call team.checks:run",
    ]


def test_dry_run_submits_nothing(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(RELEASE)
    with Client(server.url) as client:
        before = len(client.workflows(limit=1000).workflows)
        result = flow(server, "run", str(path), "--dry-run", "-p", "version=1.4")
        assert result.returncode == 0, result.stderr
        assert len(client.workflows(limit=1000).workflows) == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("needs: [test-a, test-b]", "needs: [test-a, nope]"),
            "steps.3.needs.1: no step is named 'nope'",
        ),
        (
            ("needs: [build]\n    job: {command: [sh", "needs: [deploy]\n    job: {command: [sh"),
            "the needs form a cycle",
        ),
        (
            ("concurrency: 2", "concurrency: 0"),
            "concurrency: Input should be greater than or equal to 1",
        ),
        (
            ("[make, clean]}", "[make, clean], timeout: soon}"),
            "steps.0.revert.timeout: 'soon' is not a duration",
        ),
        (("{{ steps.test-b.output }}", "{{ steps.test-c.output }}"), "no step is named 'test-c'"),
        (("steps:", "steps: [\n"), "is not valid YAML"),
    ],
)
def test_dry_run_of_a_bad_document_is_one_line_naming_the_problem(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = tmp_path / "bad.yaml"
    assert change[0] in RELEASE
    path.write_text(RELEASE.replace(*change, 1))
    result = flow(None, "run", str(path), "--dry-run", "-p", "version=1.4")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"jobdock: {path}: ")
    assert message in result.stderr


def test_dry_run_names_a_parameter_without_a_value(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(RELEASE)
    result = flow(None, "run", str(path), "--dry-run")
    assert result.returncode == 1
    assert result.stderr == (
        f"jobdock: {path}: params.version: the parameter has no value (give it at submit)\n"
    )


# -- watching ------------------------------------------------------------------------------

STAMP = r"\d\d:\d\d:\d\d  "


def _lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The lines ``proc`` writes, as they come."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str], match: str, timeout: float = 30) -> list[str]:
    """Lines up to and with the first that matches ``match`` (a regex)."""
    deadline = time.monotonic() + timeout
    got: list[str] = []
    while True:
        left = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(0.0, left))
        except queue.Empty:
            raise AssertionError(f"no line matching {match!r} in {timeout}s: {got}") from None
        got.append(line)
        if re.search(match, line):
            return got


def _gated(gate: Path, then: str = "true") -> str:
    """A command that waits for the file ``gate``, then runs ``then``."""
    return f"[sh, -c, 'until [ -e {gate} ]; do sleep 0.05; done; {then}']"


def test_flow_show_watch_off_a_terminal_prints_each_change_as_a_line(
    zoned: ServerProcess, tmp_path: Path
) -> None:
    built, deployed = tmp_path / "built", tmp_path / "deployed"
    path = tmp_path / "demo.yaml"
    path.write_text(
        "name: demo\nsteps:\n"
        f"  - {{name: build, job: {{command: {_gated(built)}}}, revert: {{command: ['true']}}}}\n"
        f"  - {{name: deploy, needs: [build], job: {{command: {_gated(deployed, 'exit 2')}}}}}\n"
    )
    workflow_id = flow(zoned, "run", str(path)).stdout.strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobdock", "flow", "show", workflow_id, "--watch"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JOBDOCK_URL": zoned.url, "COLUMNS": "200"},
    )
    try:
        lines = _lines_of(proc)
        first = _until(lines, "step build  running")
        assert re.fullmatch(f"{STAMP}workflow demo {workflow_id}  running", first[0])
        with Client(zoned.url) as client:
            jobs = [step.job_id for step in client.workflow(workflow_id).steps]
        assert re.fullmatch(f"{STAMP}step build  running  (attempt 1  )?job {jobs[0]}", first[-1])
        built.touch()
        moved = _until(lines, "step deploy  running")
        assert any(
            re.fullmatch(f"{STAMP}step build  succeeded  attempt 1  job {jobs[0]}", line)
            for line in moved
        ), moved
        deployed.touch()
        ended = _until(lines, f"workflow demo {workflow_id}  failed")
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    moves = [re.sub(STAMP, "", line).split("  ")[:2] for line in ended]
    assert ["step deploy", "failed"] in moves
    assert ["step build", "reverted"] in moves
    assert ended[-1].endswith(
        f"workflow demo {workflow_id}  failed: step 'deploy' failed: exited with code 2"
    )


def test_flow_list_watch_prints_the_list_again_when_a_workflow_moves(
    zoned: ServerProcess, tmp_path: Path
) -> None:
    ids = {}
    for name in ("first", "second"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"name: {name}\nsteps:\n  - {{name: wait, job: {{command: {_gated(tmp_path / name)}}}}}\n"
        )
        ids[name] = flow(zoned, "run", str(path)).stdout.strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobdock", "flow", "list", "--watch"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JOBDOCK_URL": zoned.url, "COLUMNS": "200"},
    )
    try:
        lines = _lines_of(proc)
        shown = _until(lines, f"^{ids['first']}\tfirst\trunning\t0/1\t")
        assert shown[0].startswith("WORKFLOW ID\tNAME\tSTATE\tSTEPS")
        assert shown[1].startswith(f"{ids['second']}\tsecond\trunning\t0/1\t")
        (tmp_path / "first").touch()
        # The first finished: the list again, after a blank line, without it.
        again = _until(lines, f"^{ids['second']}\t")
        assert again[:2] == ["", "WORKFLOW ID\tNAME\tSTATE\tSTEPS\tCREATED"]
        assert len(again) == 3
    finally:
        (tmp_path / "second").touch()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


# -- whole-flow retries --------------------------------------------------------------------


def test_a_failed_round_is_reverted_and_run_again(zoned: ServerProcess, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    flaky = tmp_path / "second-time"
    path = tmp_path / "webserver.yaml"
    path.write_text(
        "name: webserver\nretries: 2\nsteps:\n"
        f"  - {{name: setup, job: {{command: [sh, -c, 'echo setup >> {journal}']}},"
        f" revert: {{command: [sh, -c, 'echo undo >> {journal}']}}}}\n"
        "  - name: serve\n    needs: [setup]\n"
        f"    job: {{command: [sh, -c, 'test -e {flaky} || {{ touch {flaky}; exit 3; }}']}}\n"
    )
    dry = flow(None, "run", str(path), "--dry-run")
    assert dry.stdout.splitlines()[0] == (
        "webserver  2 steps, at most 4 at once, run again up to 2 times if a round fails"
    )

    result = flow(zoned, "run", str(path), "--wait")

    assert result.returncode == 0, result.stdout + result.stderr
    assert journal.read_text().split() == ["setup", "undo", "setup"]
    lines = [re.sub(STAMP, "", line) for line in result.stdout.splitlines()]
    workflow_id = lines[0].split()[2]
    # The moves in between come as fast as the polls see them: on a busy
    # machine the first poll may already see the first round reverting, the
    # second one running, or (its steps wake each other at once) the end.
    assert re.fullmatch(
        rf"workflow webserver {workflow_id}  "
        r"(running  round [12]|reverting  round 1: .*|succeeded  round 2)",
        lines[0],
    ), lines[0]
    assert f"workflow webserver {workflow_id}  succeeded  round 2" in lines
    tree = flow(zoned, "show", workflow_id).stdout
    assert "succeeded" in tree.splitlines()[0] and "round 2 of at most 3" in tree.splitlines()[0]
    assert "↻ round 1 failed, reverted: step 'serve' failed: exited with code 3" in tree
    with Client(zoned.url) as client:
        record = client.workflow(workflow_id)
    assert (record.state.value, record.round, record.retries) == ("succeeded", 2, 2)
    [earlier] = record.rounds
    assert {s.name: s.state.value for s in earlier.steps} == {
        "setup": "reverted",
        "serve": "failed",
    }
    assert {s.job_id for s in earlier.steps}.isdisjoint({s.job_id for s in record.steps})


def test_retries_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("name: many\nretries: 11\nsteps: [{name: a, job: {command: ['true']}}]\n")
    result = flow(None, "run", str(path), "--dry-run")
    assert result.returncode == 1
    assert result.stderr == (
        f"jobdock: {path}: retries: Input should be less than or equal to 10\n"
    )
