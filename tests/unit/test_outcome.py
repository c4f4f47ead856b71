"""How an attempt's end becomes the job's outcome (models.outcome_of), and the
exit status ``jobdock run`` and ``jobdock wait`` give for it (cli.exit_code_of)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from jobdock.cli import exit_code_of
from jobdock.models import ExitStatus, Job, JobSpec, JobState, Reason, describe_exit, outcome_of

# -- outcome_of -------------------------------------------------------------------


def test_exit_code_zero_is_success() -> None:
    before = time.time()
    outcome = outcome_of(ExitStatus(exit_code=0), None, None)

    assert (outcome.state, outcome.reason) == (JobState.SUCCEEDED, Reason.EXITED)
    assert (outcome.exit_code, outcome.signal) == (0, None)
    assert outcome.message == "exited with code 0"
    assert before <= outcome.finished_at <= time.time()


def test_a_nonzero_exit_code_is_a_failure() -> None:
    outcome = outcome_of(ExitStatus(exit_code=3), None, None)

    assert (outcome.state, outcome.reason) == (JobState.FAILED, Reason.EXITED)
    assert (outcome.exit_code, outcome.signal) == (3, None)
    assert outcome.message == "exited with code 3"


def test_a_reason_the_runtime_knows_wins_over_the_bare_exit() -> None:
    status = ExitStatus(signal=9, reason=Reason.OOM, message="out of memory (limit 64 MiB)")
    outcome = outcome_of(status, None, None)

    assert (outcome.state, outcome.reason) == (JobState.FAILED, Reason.OOM)
    assert outcome.message == "out of memory (limit 64 MiB); killed by signal 9 (SIGKILL)"


def test_death_by_a_signal_is_a_failure_naming_the_signal() -> None:
    outcome = outcome_of(ExitStatus(signal=9), None, None)

    assert (outcome.state, outcome.reason) == (JobState.FAILED, Reason.SIGNALED)
    assert (outcome.exit_code, outcome.signal) == (None, 9)
    assert outcome.message == "killed by signal 9 (SIGKILL)"


def test_a_signal_without_a_name_is_still_described() -> None:
    assert describe_exit(ExitStatus(signal=99)) == "killed by signal 99 (unknown)"


@pytest.mark.parametrize(
    ("status", "how"),
    [
        (ExitStatus(signal=15), "killed by signal 15 (SIGTERM)"),
        (ExitStatus(signal=9), "killed by signal 9 (SIGKILL)"),
        # It exited cleanly during its grace period, but it had run out of time.
        (ExitStatus(exit_code=0), "exited with code 0"),
    ],
)
def test_a_job_stopped_for_its_timeout_failed_with_reason_timeout(
    status: ExitStatus, how: str
) -> None:
    outcome = outcome_of(status, Reason.TIMEOUT, 2.5)

    assert (outcome.state, outcome.reason) == (JobState.FAILED, Reason.TIMEOUT)
    assert (outcome.exit_code, outcome.signal) == (status.exit_code, status.signal)
    assert outcome.message == f"timed out after 2.5s; {how}"


@pytest.mark.parametrize(
    ("status", "how"),
    [
        (ExitStatus(signal=15), "killed by signal 15 (SIGTERM)"),
        (ExitStatus(exit_code=0), "exited with code 0"),
    ],
)
def test_a_job_stopped_on_request_is_cancelled(status: ExitStatus, how: str) -> None:
    outcome = outcome_of(status, Reason.CANCELLED, None)

    assert (outcome.state, outcome.reason) == (JobState.CANCELLED, Reason.CANCELLED)
    assert (outcome.exit_code, outcome.signal) == (status.exit_code, status.signal)
    assert outcome.message == f"stopped on request; {how}"


# -- exit_code_of -----------------------------------------------------------------


def finished_job(state: JobState, reason: Reason, **fields: Any) -> Job:
    return Job(
        id="0123456789abcdef",
        state=state,
        spec=JobSpec(command=["true"]),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        reason=reason,
        **fields,
    )


@pytest.mark.parametrize(
    ("job", "code"),
    [
        (finished_job(JobState.SUCCEEDED, Reason.EXITED, exit_code=0), 0),
        (finished_job(JobState.FAILED, Reason.EXITED, exit_code=3), 3),
        (finished_job(JobState.FAILED, Reason.EXITED, exit_code=255), 255),
        (finished_job(JobState.FAILED, Reason.SIGNALED, signal=9), 128 + 9),
        (finished_job(JobState.FAILED, Reason.SIGNALED, signal=15), 128 + 15),
        (finished_job(JobState.FAILED, Reason.TIMEOUT, signal=15), 124),
        (finished_job(JobState.FAILED, Reason.TIMEOUT, exit_code=0), 124),
        (
            finished_job(
                JobState.FAILED,
                Reason.SPAWN_ERROR,
                message="cannot run 'nope': No such file or directory",
            ),
            127,
        ),
        (
            finished_job(
                JobState.FAILED, Reason.SPAWN_ERROR, message="cannot run '/x': Permission denied"
            ),
            126,
        ),
        (
            finished_job(
                JobState.CANCELLED, Reason.CANCELLED, message="cancelled before it started"
            ),
            130,
        ),
        # Stopped while running: it reports the signal, as a shell would.
        (finished_job(JobState.CANCELLED, Reason.CANCELLED, signal=15), 128 + 15),
        # No exit of its own: jobdock, not the job, ended it.
        (finished_job(JobState.FAILED, Reason.WORKER_LOST), 125),
    ],
    ids=[
        "exit-0",
        "exit-3",
        "exit-255",
        "sigkill",
        "sigterm",
        "timeout-killed",
        "timeout-exited",
        "spawn-error-not-found",
        "spawn-error-permission",
        "cancelled-before-start",
        "cancelled-while-running",
        "worker-lost",
    ],
)
def test_the_exit_status_of_run_and_wait_says_how_the_job_ended(job: Job, code: int) -> None:
    assert exit_code_of(job) == code


def test_a_limit_the_job_reached_leads_the_message_whatever_stopped_it() -> None:
    status = ExitStatus(signal=9, limit="reached its limit of 8 processes (fork failed)")

    outcome = outcome_of(status, Reason.TIMEOUT, 5)

    assert (outcome.state, outcome.reason) == (JobState.FAILED, Reason.TIMEOUT)
    assert outcome.message == (
        "reached its limit of 8 processes (fork failed); "
        "timed out after 5s; killed by signal 9 (SIGKILL)"
    )
