"""The typed keyword arguments of Flow.step, Flow.call and Sandbox.run name
every JobSpec field, and only those: a field added to JobSpec is added here
too, or this fails."""

from __future__ import annotations

from jobdock.models import JobSpec, RunFields, StepFields


def test_run_fields_are_jobspecs_fields_but_command_name_and_input() -> None:
    assert RunFields.__optional_keys__ == set(JobSpec.model_fields) - {
        "command",
        "name",
        "stdin",
        "stdin_base64",
        "env",
    }


def test_a_steps_fields_add_its_input() -> None:
    assert StepFields.__optional_keys__ - RunFields.__optional_keys__ == {
        "stdin",
        "stdin_base64",
        "env",
    }
