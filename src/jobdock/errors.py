"""The exception tree of jobdock.

Every error jobdock raises on purpose derives from :class:`JobdockError`. A
class's docstring is its default message; subclasses carry structured fields
so that the HTTP edge and the CLI can render them without parsing strings.
This module imports nothing from jobdock.
"""

from __future__ import annotations


class JobdockError(Exception):
    """jobdock failed."""

    code = "error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        super().__init__(self.message)


class InvalidSpec(JobdockError):
    """The job spec is invalid."""

    code = "invalid_spec"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class InvalidRequest(JobdockError):
    """The request is invalid."""

    code = "invalid_request"

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class InvalidJson(InvalidRequest):
    """The body is not valid JSON."""

    code = "invalid_json"


class RequestTooLarge(JobdockError):
    """The request body is larger than this server accepts."""

    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the request body is larger than this server accepts: the limit is "
            f"{_size_text(limit)} (max_request_body)"
        )


class HeaderTimeout(JobdockError):
    """The request's head did not arrive in time."""

    code = "request_timeout"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"the request's head (method, path and headers) did not arrive within "
            f"{seconds:g} s (header_timeout)"
        )


def _size_text(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % (scale // 16) == 0:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


class JobNotFound(JobdockError):
    """No such job."""

    code = "not_found"

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")


class AmbiguousReference(JobdockError):
    """A job reference (an id prefix or a name) matches more than one job."""

    code = "ambiguous_reference"

    def __init__(self, ref: str, candidates: list[str]) -> None:
        self.ref = ref
        self.candidates = candidates
        shown = ", ".join(candidates[:10]) + (", ..." if len(candidates) > 10 else "")
        super().__init__(
            f"{ref!r} matches more than one job ({shown}); give more of the id, or the whole id"
        )


class ScheduleNotFound(JobdockError):
    """No such schedule."""

    code = "not_found"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r}")


class ScheduleExists(JobdockError):
    """A schedule of that name exists."""

    code = "schedule_exists"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a schedule named {name!r} exists already")


class IllegalTransition(JobdockError):
    """The job cannot move to that state."""

    code = "illegal_transition"

    def __init__(self, job_id: str, state: str, target: str) -> None:
        self.job_id = job_id
        self.state = state
        self.target = target
        super().__init__(f"job {job_id} is {state}; it cannot become {target}")


class FencedOff(JobdockError):
    """A newer attempt owns this job; the write of an older attempt was refused."""

    code = "fenced_off"

    def __init__(self, job_id: str, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        super().__init__(f"attempt {attempt} of job {job_id} no longer holds the job's lease")


class StdinClosed(JobdockError):
    """The job takes no more input on its stdin."""

    code = "stdin_closed"

    def __init__(self, job_id: str, why: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} takes no more stdin: {why}")


class StdinTooLarge(JobdockError):
    """The job's streamed stdin would be larger than this server keeps."""

    code = "stdin_too_large"

    def __init__(self, job_id: str, limit: int) -> None:
        self.job_id = job_id
        self.limit = limit
        super().__init__(
            f"the stdin of job {job_id} would be larger than this server keeps: the limit "
            f"is {_size_text(limit)} (max_stdin_stream)"
        )


class StoreError(JobdockError):
    """The job store is unavailable."""

    code = "store_unavailable"


class SpawnError(JobdockError):
    """The job's command could not be started."""

    code = "spawn_error"

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        self.errno = errno
        super().__init__(message)


class ConfigError(JobdockError):
    """The configuration is invalid."""

    code = "invalid_config"


class ApiError(JobdockError):
    """The jobdock server answered with an error."""

    code = "api_error"

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class ServerUnreachable(JobdockError):
    """The jobdock server cannot be reached."""

    code = "server_unreachable"


class EngineError(JobdockError):
    """The container engine refused a request."""

    code = "engine_error"

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class EngineUnavailable(EngineError):
    """The container engine cannot be reached."""

    code = "engine_unavailable"


class ImageNotFound(SpawnError):
    """The container image could not be found or pulled."""

    code = "image_not_found"

    def __init__(self, image: str, detail: str) -> None:
        self.image = image
        super().__init__(f"image {image!r} could not be found or pulled: {detail}")


class Unauthenticated(JobdockError):
    """The request carries no valid credentials."""

    code = "unauthenticated"


class Forbidden(JobdockError):
    """Only an administrator may do that."""

    code = "forbidden"


class CrossOrigin(Forbidden):
    """A page of another site may not act on jobdock with your credentials."""

    code = "cross_origin"


class UnknownSecret(InvalidSpec):
    """The job references a secret its owner does not have."""

    code = "unknown_secret"


class SecretNotFound(JobdockError):
    """No such secret."""

    code = "not_found"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no secret named {name!r}")


class TokenNotFound(JobdockError):
    """No such token."""

    code = "not_found"

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(f"no token with id {token_id!r}")


class SecretsUnavailable(JobdockError):
    """This server has no secret key configured, so it cannot store secrets."""

    code = "secrets_unavailable"


class WorkflowNotFound(JobdockError):
    """No such workflow."""

    code = "not_found"

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow with id {workflow_id!r}")


class WorkflowFinished(IllegalTransition):
    """The workflow has finished; it cannot be cancelled."""

    def __init__(self, workflow_id: str, state: str) -> None:
        self.workflow_id = workflow_id
        JobdockError.__init__(self, f"workflow {workflow_id} is {state}; it cannot be cancelled")
        self.job_id, self.state, self.target = workflow_id, state, "cancelled"


# -- dispatch templates (docs/dispatch.md) ---------------------------------------


class TemplateNotFound(JobdockError):
    """No such dispatch template."""

    code = "not_found"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no dispatch template named {name!r}")


class TemplateFailed(JobdockError):
    """The template's jq filter failed."""

    code = "template_failed"
    field: str | None = None


class TemplateTimeout(TemplateFailed):
    """The template's jq filter ran too long."""

    code = "template_timeout"


class TemplateOutputTooLarge(TemplateFailed):
    """The template's jq filter produced too much output."""

    code = "template_output_too_large"


class TemplateSpecInvalid(InvalidSpec):
    """The spec a template produced is invalid, or more than its caller may have."""


class NotReady(JobdockError):
    """The server cannot serve now: its store or container engine does not answer."""

    code = "not_ready"


class RateLimited(JobdockError):
    """Too many submits: retry later."""

    code = "rate_limited"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        #: Seconds until a retry may pass (the response's Retry-After, rounded up).
        self.retry_after = retry_after
        super().__init__(message)


class CannotStart(JobdockError):
    """No worker can start this job now (see its waiting_reason)."""

    code = "cannot_start"


# -- machine pools (docs/machines.md) --------------------------------------------


class PoolNotFound(JobdockError):
    """No such machine pool."""

    code = "not_found"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no machine pool named {name!r}")
