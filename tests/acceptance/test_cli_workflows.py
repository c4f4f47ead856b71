"""``jobdock flow`` as a user types it: workflow files, workflows registered
by an installed package (a dist-info directory on PYTHONPATH, as pip would
leave it), ``show``, ``list`` and ``cancel``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jobdock import Client
from support import ServerProcess

PLUGIN = '''
"""Workflows of a team, registered through an entry point."""

import os

from jobdock import Flow

HERE = os.path.dirname(os.path.abspath(__file__))


def deploy(version: str, replicas: int = 2) -> Flow:
    """Build an image, then announce it."""
    return (
        Flow("deploy", params={"version": version})
        .call(
            "build",
            "teamflows:build",
            {"version": "{{ params.version }}", "replicas": replicas},
            env={"PYTHONPATH": HERE},
        )
        .step("announce", ["echo", "built {{ steps.build.output.image }}"], needs=["build"])
    )


def build(version: str, replicas: int) -> dict:
    print("building", version)
    return {"image": f"app:{version}", "replicas": replicas}
'''


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    """A directory holding an 'installed' package that registers 'deploy'."""
    root = tmp_path / "site"
    info = root / "teamflows-1.0.dist-info"
    info.mkdir(parents=True)
    (root / "teamflows.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: teamflows\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[jobdock.workflows]\ndeploy = teamflows:deploy\n")
    return root


def flow(
    server: ServerProcess, *args: str, path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBDOCK_URL": server.url, "COLUMNS": "200"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "jobdock", "flow", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_flow_ls_lists_registered_workflows_with_their_parameters(
    server: ServerProcess, plugins: Path
) -> None:
    result = flow(server, "ls", path=plugins)

    assert result.returncode == 0, result.stderr
    assert "deploy" in result.stdout
    assert "version, replicas=2" in result.stdout
    assert "teamflows:deploy" in result.stdout
    assert "Build an image" in result.stdout


def test_flow_run_a_registered_workflow_calls_python_and_passes_its_output_on(
    server: ServerProcess, plugins: Path
) -> None:
    result = flow(server, "run", "deploy", "--param", "version=1.2", "--wait", path=plugins)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    listed = flow(server, "list", "-a")
    # Into a pipe the table is tab-separated: one cell a column.
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    workflow_id = next(row[0] for row in rows if "deploy" in row)
    record = json.loads(flow(server, "show", "--json", workflow_id).stdout)
    build, announce = record["steps"]
    assert build["output"] == {"image": "app:1.2", "replicas": 2}
    logs = subprocess.run(
        [sys.executable, "-m", "jobdock", "logs", announce["job_id"]],
        capture_output=True,
        env={**os.environ, "JOBDOCK_URL": server.url},
        timeout=60,
    )
    assert logs.stdout == b"built app:1.2\n"


def test_flow_run_refuses_a_missing_parameter_in_one_line(
    server: ServerProcess, plugins: Path
) -> None:
    result = flow(server, "run", "deploy", path=plugins)

    assert result.returncode == 1
    assert result.stderr == "jobdock: params.version: required by workflow 'deploy'\n"


def test_flow_run_a_file_with_params_waits_and_shows_the_tree(
    server: ServerProcess, tmp_path: Path
) -> None:
    document = tmp_path / "release.yaml"
    document.write_text(
        textwrap.dedent(
            """
            name: release
            params: {code: null}
            steps:
              - name: prepare
                job: {command: [echo, ready]}
                revert: {command: [echo, undone]}
              - name: ship
                needs: [prepare]
                job: {command: [sh, -c, "exit {{ params.code }}"]}
            """
        )
    )

    failed = flow(server, "run", str(document), "-p", "code=3", "--wait")
    shipped = flow(server, "run", str(document), "-p", "code=0")

    assert failed.returncode == 1
    assert "release" in failed.stdout and "failed" in failed.stdout
    assert "reverted" in failed.stdout and "exited with code 3" in failed.stdout
    assert shipped.returncode == 0, shipped.stderr
    workflow_id = shipped.stdout.strip()
    shown = flow(server, "show", "--watch", workflow_id)
    assert shown.returncode == 0
    assert "prepare" in shown.stdout and "ship" in shown.stdout
    assert "succeeded" in shown.stdout


def test_flow_cancel_and_errors_are_one_line(server: ServerProcess, tmp_path: Path) -> None:
    document = tmp_path / "long.json"
    document.write_text(
        json.dumps(
            {"name": "long", "steps": [{"name": "wait", "job": {"command": ["sleep", "60"]}}]}
        )
    )
    workflow_id = flow(server, "run", str(document)).stdout.strip()

    cancelled = flow(server, "cancel", workflow_id)
    missing = flow(server, "run", "no-such-flow")
    unknown = flow(server, "show", "0000")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsteps:\n  - {name: a, needs: [b], job: {command: [true]}}\n")
    invalid = flow(server, "run", str(broken))

    assert cancelled.returncode == 0
    assert cancelled.stdout.startswith(f"{workflow_id}: ")
    assert missing.returncode == 1
    assert (
        missing.stderr
        == "jobdock: no workflow named 'no-such-flow' is registered (see 'jobdock flow ls')\n"
    )
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert invalid.returncode == 1
    assert invalid.stderr == "jobdock: steps.0.needs.0: no step is named 'b'\n"


def test_flow_run_params_keep_their_text_and_take_json_with_colon_equals(
    server: ServerProcess, tmp_path: Path, client: Client
) -> None:
    document = tmp_path / "release.yaml"
    document.write_text(
        "name: release\nparams: {version: null, replicas: 1}\n"
        "steps:\n  - name: tag\n    job: {command: [echo, '{{ params.version }}']}\n"
    )

    result = flow(server, "run", str(document), "-p", "version=1.10", "-p", "replicas:=3")
    refused = flow(server, "run", str(document), "-p", "replicas:=three")

    assert result.returncode == 0, result.stderr
    assert client.workflow(result.stdout.strip()).params == {"version": "1.10", "replicas": 3}
    assert refused.returncode == 2
    assert refused.stderr.startswith("jobdock: --param: replicas:= takes a JSON literal")
    assert refused.stderr.count("\n") == 1
