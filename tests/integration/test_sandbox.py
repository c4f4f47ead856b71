"""Library mode: the sandbox runs a command with limits in this process,
without a server (tjob's library mode)."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import pytest

from jobdock import JobState, Reason, Sandbox, sandbox


def test_run_returns_the_outcome_and_both_streams() -> None:
    result = sandbox.run(["sh", "-c", "echo out; echo err >&2; exit 3"])

    assert (result.state, result.reason, result.exit_code) == (JobState.FAILED, Reason.EXITED, 3)
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")


def test_a_timeout_stops_the_command() -> None:
    result = sandbox.run(["sleep", "30"], timeout=0.5, kill_grace=1)

    assert (result.state, result.reason) == (JobState.FAILED, Reason.TIMEOUT)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None, reason="needs root and bubblewrap"
)
async def test_the_async_sandbox_enforces_memory_and_isolates() -> None:
    async with Sandbox() as box:
        if box.confinement.hierarchy is None:
            pytest.skip(f"no cgroups: {box.confinement.problem}")
        hog = await box.run(
            ["python3", "-c", "b = bytearray(512 << 20)"], resources={"memory": "64m"}
        )
        alone = await box.run(["sh", "-c", "echo $$"], isolation=True)

    assert hog.reason is Reason.OOM
    assert hog.accounting is not None and hog.accounting.limits == {"memory": 64 << 20}
    assert alone.stdout == b"2\n"  # its own PIDs: an init is 1


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None, reason="needs root and bubblewrap"
)
def test_the_readmes_sandbox_example_runs_job_py_of_this_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "job.py").write_text("import os\nprint(os.getcwd(), os.environ['HOME'])\n")
    monkeypatch.chdir(tmp_path)

    result = sandbox.run(["python3", "job.py"], resources={"memory": "1g"}, isolation=True)

    assert result.ok, result.stderr
    assert result.stdout == f"{tmp_path} {pwd.getpwuid(os.getuid()).pw_dir}\n".encode()
