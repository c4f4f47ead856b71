"""What the client raises when the server answers with an error, and when a
wait runs out of time.

Each error code the server answers with has its class here: a subclass of
:class:`~jobdock.errors.ApiError` (``.status``, ``.code``, ``.message``) and
of the server's class for the same error (jobdock.errors), so both
``except jobdock.JobNotFound`` and ``except jobdock.ApiError`` catch it.
``not_found`` is told apart by what was asked for (the request's path): a
job, a workflow, a schedule, a secret, a token or a dispatch template.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx

from jobdock import errors as _server
from jobdock.errors import ApiError, JobdockError, ServerUnreachable

if TYPE_CHECKING:
    from jobdock.models import Job, Workflow


class _Answer(ApiError):
    """The server answered with an error (the base of the classes here)."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.field = field
        # Not the server class's __init__: its arguments are what the server
        # knew; the client has the answer's message.
        JobdockError.__init__(self, message)

    def __init_subclass__(cls) -> None:
        # The code is the server class's (ApiError's comes first in the MRO).
        super().__init_subclass__()
        for base in cls.__mro__[1:]:
            if base.__module__ == _server.__name__ and base not in (ApiError, JobdockError):
                cls.code = getattr(base, "code")  # noqa: B009 (mypy: a type has no code)
                return


class InvalidSpec(_Answer, _server.InvalidSpec):
    """The server refused the job spec (``.field`` names the field at fault)."""


class UnknownSecret(InvalidSpec, _server.UnknownSecret):
    """The job references a secret its owner does not have."""


class InvalidRequest(_Answer, _server.InvalidRequest):
    """The server refused the request (``.field`` names the parameter at fault)."""


class InvalidJson(InvalidRequest, _server.InvalidJson):
    """The server could not read the request's body."""


class RequestTooLarge(_Answer, _server.RequestTooLarge):
    """The request body is larger than the server accepts."""


class HeaderTimeout(_Answer, _server.HeaderTimeout):
    """The request's head did not arrive at the server in time."""


class NotFound(_Answer):
    """What was asked for does not exist (or is not yours to see)."""

    code = "not_found"


class JobNotFound(NotFound, _server.JobNotFound):
    """No such job (``.job_id``)."""


class WorkflowNotFound(NotFound, _server.WorkflowNotFound):
    """No such workflow (``.workflow_id``)."""


class ScheduleNotFound(NotFound, _server.ScheduleNotFound):
    """No such schedule (``.name``)."""


class SecretNotFound(NotFound, _server.SecretNotFound):
    """No such secret (``.name``)."""


class TokenNotFound(NotFound, _server.TokenNotFound):
    """No such token (``.token_id``)."""


class TemplateNotFound(NotFound, _server.TemplateNotFound):
    """No such dispatch template (``.name``)."""


class PoolNotFound(NotFound, _server.PoolNotFound):
    """No such machine pool (the message names it)."""


class ScheduleExists(_Answer, _server.ScheduleExists):
    """A schedule of that name exists."""


class IllegalTransition(_Answer, _server.IllegalTransition):
    """The job cannot move to that state (``.job_id``, ``.state``, ``.target``)."""


class WorkflowFinished(IllegalTransition, _server.WorkflowFinished):
    """The workflow has finished; it cannot be cancelled."""


class FencedOff(_Answer, _server.FencedOff):
    """A newer attempt owns the job."""


class StoreError(_Answer, _server.StoreError):
    """The server's job store is unavailable."""


class SpawnError(_Answer, _server.SpawnError):
    """The job's command could not be started."""


class ImageNotFound(SpawnError, _server.ImageNotFound):
    """The container image could not be found or pulled."""


class ConfigError(_Answer, _server.ConfigError):
    """The server's configuration is invalid."""


class EngineError(_Answer, _server.EngineError):  # type: ignore[misc]  # .status: the HTTP one
    """The server's container engine refused a request."""


class EngineUnavailable(EngineError, _server.EngineUnavailable):  # type: ignore[misc]
    """The server's container engine cannot be reached."""


class Unauthenticated(_Answer, _server.Unauthenticated):
    """The request carries no valid credentials."""


class Forbidden(_Answer, _server.Forbidden):
    """You may not do that."""


class CrossOrigin(Forbidden, _server.CrossOrigin):
    """A page of another site may not act with your credentials."""


class SecretsUnavailable(_Answer, _server.SecretsUnavailable):
    """The server has no secret key configured, so it cannot store secrets."""


class TemplateFailed(_Answer, _server.TemplateFailed):
    """The dispatch template's jq filter failed."""


class TemplateTimeout(TemplateFailed, _server.TemplateTimeout):
    """The dispatch template's jq filter ran too long."""


class TemplateOutputTooLarge(TemplateFailed, _server.TemplateOutputTooLarge):
    """The dispatch template's jq filter produced too much output."""


class NotReady(_Answer, _server.NotReady):
    """The server's store or container engine does not answer (/health/ready)."""


class RateLimited(_Answer, _server.RateLimited):
    """Too many submits; ``.retry_after`` says in how many seconds to retry."""

    retry_after: float = 1.0


class CannotStart(_Answer, _server.CannotStart):
    """No worker can start this job now (its ``waiting_reason`` says why)."""


class AmbiguousReference(_Answer, _server.AmbiguousReference):
    """A name or id prefix that matches more than one of your jobs (the
    message lists their ids)."""


class StdinClosed(_Answer, _server.StdinClosed):
    """The job's streamed stdin is closed: sent to its end, or the job ended."""


class StdinTooLarge(_Answer, _server.StdinTooLarge):
    """More streamed stdin than the server's ``max_stdin_stream``."""


#: The class of each code the server answers with, but ``not_found``.
_BY_CODE: dict[str, type[_Answer]] = {
    cls.code: cls
    for cls in (
        InvalidSpec,
        UnknownSecret,
        InvalidRequest,
        InvalidJson,
        RequestTooLarge,
        HeaderTimeout,
        ScheduleExists,
        IllegalTransition,
        FencedOff,
        StoreError,
        SpawnError,
        ImageNotFound,
        ConfigError,
        EngineError,
        EngineUnavailable,
        Unauthenticated,
        Forbidden,
        CrossOrigin,
        SecretsUnavailable,
        TemplateFailed,
        TemplateTimeout,
        TemplateOutputTooLarge,
        CannotStart,
        NotReady,
        RateLimited,
        AmbiguousReference,
        StdinClosed,
        StdinTooLarge,
    )
}

#: The class of ``not_found`` for each collection of the API, and the
#: attribute that holds the id or name in the path.
_NOT_FOUND: dict[str, tuple[type[NotFound], str]] = {
    "jobs": (JobNotFound, "job_id"),
    "workflows": (WorkflowNotFound, "workflow_id"),
    "schedules": (ScheduleNotFound, "name"),
    "secrets": (SecretNotFound, "name"),
    "tokens": (TokenNotFound, "token_id"),
    "templates": (TemplateNotFound, "name"),
    "dispatch": (TemplateNotFound, "name"),
    # The pool is a query parameter (``?pool=``), not in the path.
    "machines": (PoolNotFound, ""),
}

_PATH = re.compile(r"^/v1/(?P<collection>[a-z]+)(?:/(?P<ident>[^/]+))?")
_TRANSITION = re.compile(r" is (?P<state>\w+); it cannot (?:become (?P<target>\w+)|be (\w+))")


def error_of(response: httpx.Response) -> ApiError:
    """The exception for the server's error answer ``response``."""
    try:
        error = response.json()["error"]
        code, message, field = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")
    path = response.request.url.path
    found = answer_error(response.status_code, code, message, path, field)
    if isinstance(found, RateLimited):
        found.retry_after = _retry_after(response, error)
    return found


def _retry_after(response: httpx.Response, error: dict[str, object]) -> float:
    """The seconds a rate-limited answer says to wait: its body's
    ``retry_after``, else its Retry-After header, else 1."""
    for given in (error.get("retry_after"), response.headers.get("retry-after")):
        try:
            seconds = float(given)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if 0 <= seconds <= 86400:
            return seconds
    return 1.0


def unreachable(url: str, exc: httpx.TransportError) -> ServerUnreachable:
    """The error of a request that reached no server at ``url`` (the CLI
    tells a refused connection from the others by the message and the cause)."""
    return ServerUnreachable(f"cannot reach the jobdock server at {url}: {exc}")


def answer_error(
    status: int, code: str, message: str, path: str, field: str | None = None
) -> ApiError:
    """The exception for the server's error answer to a request for ``path``."""
    found = _PATH.match(path)
    collection, ident = (found["collection"], found["ident"] or "") if found else ("", "")
    if code == "not_found":
        cls, attribute = _NOT_FOUND.get(collection, (NotFound, ""))
        error: _Answer = cls(status, code, message, field=field)
        if attribute:
            setattr(error, attribute, ident)
        return error
    if code == "illegal_transition":
        return _transition(status, message, collection, ident)
    if code in _BY_CODE:
        return _BY_CODE[code](status, code, message, field=field)
    return ApiError(status, code, message)


def _transition(status: int, message: str, collection: str, ident: str) -> IllegalTransition:
    cls = WorkflowFinished if collection == "workflows" else IllegalTransition
    error = cls(status, "illegal_transition", message)
    found = _TRANSITION.search(message)
    error.job_id = ident
    error.state = found["state"] if found else ""
    error.target = (found["target"] or "cancelled") if found else ""
    if isinstance(error, WorkflowFinished):
        error.workflow_id = ident
    return error


def finished(record: Job | Workflow, timeout: float | None) -> None:
    """Raise WaitTimeout unless ``record`` (read at the end of a wait) has finished."""
    if not record.terminal:
        from jobdock.models import Job  # loaded with the record

        what = f"job {record.id}" if isinstance(record, Job) else f"workflow {record.id}"
        raise WaitTimeout(what, str(record.state.value), timeout or 0.0, record)


class WaitTimeout(JobdockError, TimeoutError):
    """The wait ended before the job (or workflow) did: ``.job`` is its
    record as it was then, ``.timeout`` the seconds waited. It is a
    :class:`TimeoutError`, so ``except TimeoutError`` catches it too."""

    code = "wait_timeout"

    def __init__(self, what: str, state: str, timeout: float, record: Job | Workflow) -> None:
        self.timeout = timeout
        self.job = record
        super().__init__(f"{what} is still {state} after {timeout:g} s")
