"""The job model: states and their transitions, durations, and what a valid
job spec is."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from jobdock.models import (
    TERMINAL_STATES,
    TRANSITIONS,
    JobSpec,
    JobState,
    can_transition,
    describe_error,
    parse_duration,
    parse_size,
    sources_of,
)

S = JobState

#: The life of a job, written out: every move not listed here is illegal.
LEGAL = {
    (S.SCHEDULED, S.QUEUED),
    (S.SCHEDULED, S.CANCELLED),
    (S.QUEUED, S.RUNNING),
    (S.QUEUED, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.QUEUED),  # its worker was lost: run it again
    (S.RUNNING, S.RETRYING),
    (S.RETRYING, S.QUEUED),
    (S.RETRYING, S.CANCELLED),
    # a deadline passed before the job (re)started
    (S.SCHEDULED, S.FAILED),
    (S.QUEUED, S.FAILED),
    (S.RETRYING, S.FAILED),
}
ALL_MOVES = {(source, target) for source in JobState for target in JobState}


# -- states ---------------------------------------------------------------------


def test_the_transition_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(JobState)


@pytest.mark.parametrize(("source", "target"), sorted(LEGAL))
def test_a_legal_transition_is_allowed(source: JobState, target: JobState) -> None:
    assert can_transition(source, target)
    assert target in TRANSITIONS[source]


@pytest.mark.parametrize(("source", "target"), sorted(ALL_MOVES - LEGAL))
def test_any_other_transition_is_refused(source: JobState, target: JobState) -> None:
    assert not can_transition(source, target)
    assert target not in TRANSITIONS[source]


def test_the_terminal_states_are_succeeded_failed_and_cancelled() -> None:
    assert {state for state in JobState if state.terminal} == {
        S.SUCCEEDED,
        S.FAILED,
        S.CANCELLED,
    }


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_a_terminal_state_has_no_way_out(state: JobState) -> None:
    assert TRANSITIONS[state] == frozenset()
    assert not any(can_transition(state, target) for target in JobState)


def test_every_state_that_is_not_terminal_can_be_cancelled() -> None:
    assert set(sources_of(S.CANCELLED)) == {S.SCHEDULED, S.QUEUED, S.RUNNING, S.RETRYING}


# -- durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        (0, 0.0),
        ("90", 90.0),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        ("2h0m5s", 7205.0),
        (" 10M ", 600.0),
    ],
)
def test_parse_duration_accepts_seconds_and_unit_strings(
    given: str | float, seconds: float
) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize(
    "given",
    ["5x", "", "   ", -1, -0.5, "-5s", "1m5", "m", "10 m", "1h-30m", "nan", "inf", True],
)
def test_parse_duration_rejects_anything_else(given: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(given)


def test_a_rejected_duration_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'5x'"):
        parse_duration("5x")


@pytest.mark.parametrize(
    ("given", "size"),
    [
        (0, 0),
        (512, 512),
        ("512", 512),
        ("64k", 64 << 10),
        ("64m", 64 << 20),
        ("1.5G", 3 << 29),
        ("256MiB", 256 << 20),
        ("2gb", 2 << 30),
    ],
)
def test_parse_size_accepts_bytes_and_unit_strings(given: str | int, size: int) -> None:
    assert parse_size(given) == size


@pytest.mark.parametrize("given", ["5x", "", "-1", -1, "m", "1.5.2k", True])
def test_parse_size_rejects_anything_else(given: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(given)


def test_a_memory_limit_is_read_with_units_and_a_bad_one_is_named() -> None:
    assert JobSpec(command=["x"], resources={"memory": "64m"}).resources.memory == 64 << 20
    with pytest.raises(ValidationError, match="memory"):
        JobSpec(command=["x"], resources={"memory": "lots"})


# -- job specs ------------------------------------------------------------------


def spec_error(**fields: Any) -> tuple[str, str]:
    """The field and message a user is told for an invalid spec."""
    with pytest.raises(ValidationError) as raised:
        JobSpec.model_validate(fields)
    field, message = describe_error(raised.value.errors()[0])
    return field or "", message


def test_a_spec_needs_only_a_command_and_has_sensible_defaults() -> None:
    spec = JobSpec(command=["echo", "hi"])

    assert spec.command == ["echo", "hi"]
    assert (spec.env, spec.labels, spec.cwd, spec.timeout) == ({}, {}, None, None)
    assert spec.kill_grace == 10.0
    assert spec.on_worker_lost == "requeue"
    assert spec.stdin_bytes() == b""


def test_a_spec_takes_durations_as_strings() -> None:
    spec = JobSpec(command=["true"], timeout="1h30m", kill_grace="500ms")

    assert (spec.timeout, spec.kill_grace) == (5400.0, 0.5)


def test_a_spec_rejects_unknown_fields() -> None:
    field, _ = spec_error(command=["true"], comand=["typo"])

    assert field == "comand"


@pytest.mark.parametrize(
    "command", [[], [""], ["echo", "a\0b"]], ids=["empty", "no-program", "nul"]
)
def test_a_spec_rejects_a_command_with_nothing_to_run(command: list[str]) -> None:
    field, _ = spec_error(command=command)

    # A NUL byte is named where it is: command.1.
    assert field is not None and field.split(".")[0] == "command"


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "A=B", "ÄÖ"])
def test_a_spec_rejects_invalid_environment_variable_names(name: str) -> None:
    field, message = spec_error(command=["true"], env={name: "x"})

    assert field == "env"
    assert repr(name) in message


def test_a_spec_accepts_valid_environment_variable_names() -> None:
    env = {"A": "1", "_private": "2", "MIXED_case_9": "3"}

    assert JobSpec(command=["true"], env=env).env == env


@pytest.mark.parametrize("cwd", ["relative/dir", ".", "~/work", ""])
def test_a_spec_rejects_a_working_directory_that_is_not_absolute(cwd: str) -> None:
    field, message = spec_error(command=["true"], cwd=cwd)

    assert field == "cwd"
    assert "absolute" in message


@pytest.mark.parametrize(
    "key", ["", "-team", "team-", ".hidden", "has space", "a" * 64, "émoji", "a=b"]
)
def test_a_spec_rejects_invalid_label_keys(key: str) -> None:
    field, message = spec_error(command=["true"], labels={key: "v"})

    assert field == "labels"
    assert repr(key) in message


@pytest.mark.parametrize("key", ["a", "team", "app.kubernetes.io/name", "tier_1", "a" * 63])
def test_a_spec_accepts_valid_label_keys(key: str) -> None:
    assert JobSpec(command=["true"], labels={key: "v"}).labels == {key: "v"}


def test_a_spec_rejects_a_label_value_longer_than_256_characters() -> None:
    field, _ = spec_error(command=["true"], labels={"k": "v" * 257})

    assert field == "labels"


def test_a_spec_rejects_stdin_and_stdin_base64_together() -> None:
    _, message = spec_error(command=["cat"], stdin="text", stdin_base64="dGV4dA==")

    assert "not both" in message


@pytest.mark.parametrize("value", ["not base64!", "YWJ", "YW=Jj"])
def test_a_spec_rejects_stdin_base64_that_is_not_base64(value: str) -> None:
    field, message = spec_error(command=["cat"], stdin_base64=value)

    assert field == "stdin_base64"
    assert "base64" in message


def test_the_input_of_a_spec_is_its_text_or_its_decoded_bytes() -> None:
    data = bytes(range(256))

    assert JobSpec(command=["cat"], stdin="héllo").stdin_bytes() == "héllo".encode()
    assert (
        JobSpec(command=["cat"], stdin_base64=base64.b64encode(data).decode()).stdin_bytes() == data
    )
