"""Job identities without a server: the uid range setting, who may name
which user, and the working-directory check as the job's uid would see it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from jobdock.errors import ConfigError, SpawnError
from jobdock.identities import run_as_refusal, startup_problem
from jobdock.models import JobSpec
from jobdock.runtimes.base import RunAs
from jobdock.runtimes.identity import check_command, cwd_problem
from jobdock.settings import Settings, load_settings

JOB = RunAs(2_000_000, 2_000_000, "/nonexistent")


@pytest.mark.parametrize("uids", ["0-10", "2000-1000", "99999-200000", "2000000-4294967295"])
def test_a_uid_range_outside_the_bounds_is_refused(uids: str) -> None:
    with pytest.raises(ConfigError, match="job_uids"):
        load_settings(job_uids=uids)


def test_the_uid_range_is_read_as_its_bounds() -> None:
    assert Settings(job_uids="300000-300009").job_uid_range == (300_000, 300_009)


def test_only_the_operator_lets_an_owner_name_a_user_and_only_with_auth_on() -> None:
    spec = JobSpec.model_validate({"command": ["id"], "isolation": {"user": "root"}})
    on = Settings(tokens=True, job_run_as={"deploy": ["root"]})
    refused = run_as_refusal(spec, on, "bob")
    assert refused is not None and refused[0] == "isolation.user"
    assert run_as_refusal(spec, on, "deploy") is None
    assert run_as_refusal(spec, Settings(), "bob") is None  # one trust domain
    assert run_as_refusal(spec, Settings(tokens=True, jobs_as_server=True), "bob") is None


def test_job_homes_inside_the_servers_home_are_refused(tmp_path: Path) -> None:
    settings = Settings(tokens=True, home=tmp_path, job_homes=tmp_path / "homes")
    problem = startup_problem(settings)
    if os.geteuid() == 0:
        assert problem is not None and "job_homes" in problem
    else:
        assert problem is not None and "jobs_as_server = true" in problem


def test_a_directory_the_uid_may_not_enter_is_named(tmp_path: Path) -> None:
    closed = tmp_path / "closed" / "inside"
    closed.mkdir(parents=True)
    (tmp_path / "closed").chmod(0o700)
    tmp_path.chmod(0o711)
    said = cwd_problem(str(closed), JOB)
    assert said is not None and str(tmp_path / "closed") in said and "2000000" in said
    assert cwd_problem("/", JOB) is None
    assert cwd_problem(str(tmp_path / "missing"), JOB) is None  # spawning says so


def test_a_command_the_uid_may_not_run_is_refused_before_it_starts(tmp_path: Path) -> None:
    tmp_path.chmod(0o711)
    private = tmp_path / "private.sh"
    private.write_text("#!/bin/sh\n")
    private.chmod(0o700)
    with pytest.raises(SpawnError, match=r"Permission denied.*2000000") as refused:
        check_command(str(private), "/usr/bin:/bin", "/", JOB)
    assert refused.value.errno == errno.EACCES
    with pytest.raises(SpawnError, match="No such file") as missing:
        check_command("no-such-command", "/usr/bin:/bin", "/", JOB)
    assert missing.value.errno == errno.ENOENT
    check_command("true", "/usr/bin:/bin", "/", JOB)
    check_command("./true", None, "/bin", JOB)
