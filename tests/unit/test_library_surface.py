"""The library's surface without a server: every error code the server
answers with becomes its own exception class, the public signatures are
typed, and a task's call is checked and written as a workflow's call step."""

from __future__ import annotations

import inspect

import pytest

import jobdock
from jobdock import errors
from jobdock.client_errors import answer_error

#: Where each server class's ``not_found`` is answered.
_NOT_FOUND_PATHS = {
    errors.JobNotFound: "/v1/jobs/x",
    errors.WorkflowNotFound: "/v1/workflows/x",
    errors.ScheduleNotFound: "/v1/schedules/x",
    errors.SecretNotFound: "/v1/secrets/x",
    errors.TokenNotFound: "/v1/tokens/x",
    errors.TemplateNotFound: "/v1/templates/x",
    errors.PoolNotFound: "/v1/machines",
}

#: Codes that are not the server's answers: the root's, the client's own.
_NOT_ANSWERS = {"error", "api_error", "server_unreachable"}


def _server_classes() -> list[type[errors.JobdockError]]:
    found = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.JobdockError)
    ]
    return [cls for cls in found if cls.code not in _NOT_ANSWERS]


@pytest.mark.parametrize("server_class", _server_classes(), ids=lambda cls: cls.__name__)
def test_every_server_error_code_is_raised_as_its_class(
    server_class: type[errors.JobdockError],
) -> None:
    path = _NOT_FOUND_PATHS.get(server_class, "/v1/jobs/x/cancel")
    if server_class is errors.WorkflowFinished:
        path = "/v1/workflows/x/cancel"
    status = 404 if server_class.code == "not_found" else 409

    raised = answer_error(status, server_class.code, "what went wrong", path)

    assert isinstance(raised, jobdock.ApiError)
    assert (raised.status, raised.code, raised.message) == (
        status,
        server_class.code,
        "what went wrong",
    )
    if server_class not in (errors.TemplateSpecInvalid,):  # answered as invalid_spec
        assert isinstance(raised, server_class), type(raised).__mro__


def test_an_unknown_code_is_still_an_api_error() -> None:
    raised = answer_error(418, "teapot", "no coffee", "/v1/jobs")

    assert type(raised) is jobdock.ApiError
    assert (raised.status, raised.code) == (418, "teapot")


def test_the_exported_exceptions_are_the_raised_ones() -> None:
    raised = answer_error(404, "not_found", "no job with id 'abc'", "/v1/jobs/abc/logs")

    assert type(raised) is jobdock.JobNotFound
    assert raised.job_id == "abc"  # type: ignore[attr-defined]
    assert issubclass(jobdock.JobNotFound, errors.JobNotFound)
    assert issubclass(jobdock.WaitTimeout, TimeoutError)


_PUBLIC_CLASSES = [
    jobdock.Client,
    jobdock.AsyncClient,
    jobdock.JobHandle,
    jobdock.AsyncJobHandle,
    jobdock.SandboxJob,
]


@pytest.mark.parametrize("cls", _PUBLIC_CLASSES, ids=lambda cls: cls.__name__)
def test_no_public_method_takes_untyped_keyword_arguments(cls: type) -> None:
    untyped = [
        f"{name}(**{parameter.name})"
        for name, method in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and method.__module__.startswith("jobdock")
        for parameter in inspect.signature(method).parameters.values()
        if parameter.kind is parameter.VAR_KEYWORD and parameter.annotation in ("Any", "object")
    ]

    assert untyped == []


@jobdock.task
def scale(app: str, replicas: int = 1, **labels: str) -> int:
    return replicas


def test_a_task_is_a_one_step_workflow_calling_the_function() -> None:
    spec = scale.flow("web", 3, tier="front").spec()

    assert [step.name for step in spec.steps] == ["call"]
    assert spec.steps[0].job == {
        "call": f"{__name__}:scale",
        "args": {"app": "web", "replicas": 3, "tier": "front"},
    }
    assert scale("web", 2) == 2


def test_a_task_refuses_what_its_call_step_cannot_carry() -> None:
    with pytest.raises(TypeError, match="JSON"):
        scale.flow("web", float("nan"))
    with pytest.raises(ValueError, match=r"\{\{"):
        scale.flow("{{ params.x }}")
    with pytest.raises(TypeError, match="keyword"):
        jobdock.task(lambda *parts: parts)

    def nested() -> None: ...

    with pytest.raises(TypeError, match="importable module"):
        jobdock.task(nested).flow()


def test_a_handle_equals_the_record_it_holds_and_no_other() -> None:
    from jobdock.handles import AsyncJobHandle, JobHandle
    from jobdock.models import Job

    record = Job.model_validate(
        {
            "id": "a1",
            "owner": "alice",
            "state": "queued",
            "spec": {"command": ["true"]},
            "created_at": "2026-01-01T00:00:00Z",
        }
    )
    other = record.model_copy(update={"state": "running"})
    for handle in (JobHandle.bind(record, None), AsyncJobHandle.bind(record, None)):  # type: ignore[arg-type]
        assert handle == record and record == handle
        assert handle != other and other != handle
