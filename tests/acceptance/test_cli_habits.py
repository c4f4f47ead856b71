"""The global habits of the command line (issue 21): a usage error is one
line on stderr naming what was wrong, with exit status 2, and the help stays
on ``--help``; ``jobdock --version``; shell completion as typer offers it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import jobdock

JOBDOCK = [sys.executable, "-m", "jobdock"]


def jobdock_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JOBDOCK, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80", **env},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("ps", "--al"), "--al"),
        (("ps", "--last", "many"), "'--last'"),
        (("inspect",), "job_id"),
        (("nosuch",), "'nosuch'"),
        (("schedule", "add"), "name"),
        (("logs", "abc", "--attempt", "first"), "'--attempt'"),
    ],
)
def test_a_usage_error_is_one_line_naming_what_was_wrong(args: tuple[str, ...], named: str) -> None:
    result = jobdock_cli(*args)

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("jobdock: error: ")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")
    assert named in result.stderr
    assert "--help" in result.stderr  # where to look next


def test_help_is_still_on_help() -> None:
    result = jobdock_cli("ps", "--help")

    assert result.returncode == 0
    assert "Usage: jobdock ps" in result.stdout and "--all" in result.stdout


def test_version_prints_the_version() -> None:
    result = jobdock_cli("--version")

    assert result.returncode == 0
    assert result.stdout == f"jobdock {jobdock.__version__}\n"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_options(tmp_path: Path) -> None:
    """The script ``--show-completion`` prints, sourced in bash, completes
    as a TAB would: commands, then a command's options."""
    command = " ".join(JOBDOCK)
    script = """
    eval "$(jobdock --show-completion)"
    complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _jobdock_completion jobdock;
                       echo "${COMPREPLY[*]}"; }
    complete_words jobdock p
    complete_words jobdock ps --a
    """
    # The script calls the program by its name: put a `jobdock` on PATH.
    (tmp_path / "jobdock").write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    (tmp_path / "jobdock").chmod(0o755)
    path = f"{tmp_path}:{os.environ['PATH']}"
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    commands, options = result.stdout.splitlines()
    assert commands.split() == ["ps", "prune"]
    assert options.split() == ["--all"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_install_completion_adds_it_to_bashrc(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", "-c", f"{' '.join(JOBDOCK)} --install-completion"],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "bash completion installed" in result.stdout
    assert "jobdock" in (tmp_path / ".bashrc").read_text()
