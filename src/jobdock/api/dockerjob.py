"""docker-job's API: ``POST /schedule``, ``GET /list`` and ``GET
/status/{id}``, so that a docker-job user's scripts work unchanged
(docs/machines.md#docker-jobs-api).

``POST /schedule {"docker_image", "scheduled_for", "env_vars"}`` submits an
image job of the caller's with ``run_at`` at ``scheduled_for`` and
``env_vars`` as its environment, requiring the labels of the pool named by
the ``dockerjob_pool`` setting (none: any worker that runs images). Its
refusals are docker-job's: 400 with ``{"message": ...}`` in docker-job's
words, beside jobdock's ``{"error": {"code", "message"}}``. ``GET /list``
answers the caller's jobs scheduled so, newest first, and ``GET /status/ID``
one of the caller's jobs in docker-job's words (``SCHEDULED``, ``RUNNING``,
``DONE``, ``FAILED``) as plain text. docker-job's ``PUT /callback/ID`` has
no counterpart: jobdock's workers and agents report how their jobs went,
and an interrupted machine's jobs are handed back by its agent.

Off with ``dockerjob_api = false``: the paths are then unknown (404).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from jobdock.api.auth import check_visible, principal
from jobdock.api.context import policy_of, settings_of, store_of
from jobdock.api.errors import ErrorResponse, error_body, responses
from jobdock.errors import InvalidSpec, JobNotFound, RequestTooLarge
from jobdock.models import Job, JobSpec, JobState
from jobdock.models.parsing import describe_error
from jobdock.settings import Settings
from jobdock.submit import submit

router = APIRouter(tags=["docker-job"])

#: The label of every job scheduled through docker-job's API.
DOCKERJOB_LABEL = "jobdock.io/api"
DOCKERJOB_VALUE = "docker-job"
#: How soon a job may be scheduled, as docker-job checks it.
MIN_AHEAD = timedelta(minutes=1)
#: The most jobs ``GET /list`` answers (the newest).
MAX_LIST = 1000
#: The most variables ``env_vars`` may hold.
MAX_ENV_VARS = 1000

Status = Literal["SCHEDULED", "RUNNING", "DONE", "FAILED"]
STATUSES: tuple[Status, ...] = ("SCHEDULED", "RUNNING", "DONE", "FAILED")

#: A job's state in docker-job's words.
STATUS: dict[JobState, Status] = {
    JobState.SCHEDULED: "SCHEDULED",
    JobState.QUEUED: "SCHEDULED",
    JobState.RETRYING: "SCHEDULED",
    JobState.RUNNING: "RUNNING",
    JobState.SUCCEEDED: "DONE",
    JobState.FAILED: "FAILED",
    JobState.CANCELLED: "FAILED",
}

_EnvValue = str | int | float | bool | None


class ScheduleBody(BaseModel):
    """docker-job's ``POST /schedule`` body; other fields are ignored, as
    docker-job ignores them."""

    model_config = ConfigDict(extra="ignore")

    docker_image: Annotated[str, Field(max_length=512)] | None = None
    scheduled_for: Annotated[str, Field(max_length=64)] | None = None
    env_vars: (
        Annotated[
            dict[Annotated[str, Field(max_length=256)], Any],
            Field(max_length=MAX_ENV_VARS),
        ]
        | None
    ) = None


class DockerJob(BaseModel):
    """A job as docker-job answers it (``spot_instance_request_id`` is
    always null: the machine that runs it is jobdock's business)."""

    id: str
    docker_image: str | None
    env_vars: dict[str, str]
    scheduled_for: str | None
    spot_instance_request_id: None = None
    status: Status


class ListedDockerJob(DockerJob):
    """A job as docker-job's ``GET /list`` answers it: ``schedule_for`` is
    its spelling there, kept for the scripts that read it."""

    schedule_for: str | None


class _Refused(Exception):
    """A request docker-job would answer 400 (or ``status``) with ``message``."""

    def __init__(self, message: str, field: str | None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status

    def response(self) -> JSONResponse:
        code = "not_found" if self.status == 404 else "invalid_request"
        body = {"message": self.message, **error_body(code, self.message, field=self.field)}
        return JSONResponse(body, self.status)


def _ruby_time(moment: datetime) -> str:
    """A time as docker-job's messages write it (Ruby's ``Time#to_s``)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S %z")


def scheduled_time(text: str, now: datetime) -> datetime:
    """When ``scheduled_for`` means: an RFC 3339 / ISO 8601 date-time, Ruby's
    ``2026-12-02 10:00:00 +0000``, or a time of day (``10:00``: today's, as
    docker-job's ``Time.parse`` reads it); without an offset, UTC. Raises
    ValueError for anything else."""
    text = text.strip()
    for parse in (
        datetime.fromisoformat,
        lambda t: datetime.strptime(t, "%Y-%m-%d %H:%M:%S %z"),
        lambda t: datetime.combine(now.date(), _time_of_day(t)),
    ):
        try:
            found = parse(text)
        except ValueError:
            continue
        return found if found.tzinfo is not None else found.replace(tzinfo=UTC)
    raise ValueError(text)


def _time_of_day(text: str) -> time:
    """``HH:MM`` or ``HH:MM:SS`` (a bare ``10`` is no time)."""
    if ":" not in text:
        raise ValueError(text)
    return time.fromisoformat(text)


def _body(raw: bytes) -> ScheduleBody:
    """The request's body, read as JSON whatever its content type (curl's
    ``-d`` sends docker-job's JSON as a form)."""
    try:
        found = json.loads(raw or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _Refused(f"the body is not valid JSON: {exc}", "body") from None
    if not isinstance(found, dict):
        raise _Refused("the body must be a JSON object", "body")
    try:
        return ScheduleBody.model_validate(found)
    except ValidationError as exc:
        field, message = describe_error(exc.errors()[0])
        raise _Refused(message, field) from None


def _env_text(key: str, value: Any) -> str:
    """An ``env_vars`` value as the text of its variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if not isinstance(value, _EnvValue):
        raise _Refused(
            f"the value of {key} must be a string, a number or a boolean", f"env_vars.{key}"
        )
    return str(value)


def _spec(body: ScheduleBody, settings: Settings, now: datetime) -> JobSpec:
    """The job docker-job's request asks for, in docker-job's checks and words."""
    if not body.docker_image:
        raise _Refused("docker_image field cannot be empty", "docker_image")
    if not body.scheduled_for:
        raise _Refused("scheduled_for field cannot be empty", "scheduled_for")
    try:
        when = scheduled_time(body.scheduled_for, now)
    except ValueError:
        raise _Refused(
            f"scheduled_for field is not a date-time: {body.scheduled_for!r}", "scheduled_for"
        ) from None
    if when < now + MIN_AHEAD:
        raise _Refused(
            f"scheduled_for field must be greater than {_ruby_time(now)}", "scheduled_for"
        )
    pool = next((p for p in settings.pools if p.name == settings.dockerjob_pool), None)
    try:
        return JobSpec(
            image=body.docker_image,
            env={key: _env_text(key, value) for key, value in (body.env_vars or {}).items()},
            run_at=when,
            requires=dict(pool.labels) if pool is not None else {},
            labels={DOCKERJOB_LABEL: DOCKERJOB_VALUE},
        )
    except ValidationError as exc:
        field, message = describe_error(exc.errors()[0])
        raise _Refused(message, field) from None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _answer(job: Job) -> dict[str, Any]:
    run_at = job.spec.run_at
    return {
        "id": job.id,
        "docker_image": job.spec.image,
        "env_vars": dict(job.spec.env),
        "scheduled_for": None if run_at is None else _rfc3339(run_at),
        "spot_instance_request_id": None,
        "status": STATUS[job.state],
    }


def _served(request: Request) -> None:
    """Answer as an unknown path where docker-job's API is off."""
    if not settings_of(request).dockerjob_api:
        raise HTTPException(404)


_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "Refused: `invalid_request`, with docker-job's words in `message` "
        "beside `error`.",
    }
}


@router.post(
    "/schedule",
    response_model=DockerJob,
    summary="docker-job's POST /schedule: run an image at a time",
    responses={**_REFUSALS, **responses(InvalidSpec, RequestTooLarge)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ScheduleBody.model_json_schema()}},
        }
    },
)
async def schedule(request: Request) -> Response:
    """Submit an image job of the caller's to start at ``scheduled_for`` (at
    least a minute ahead) with ``env_vars``, on the ``dockerjob_pool``."""
    _served(request)
    now = datetime.now(UTC)
    try:
        spec = _spec(_body(await request.body()), settings_of(request), now)
    except _Refused as refused:
        return refused.response()
    job = await submit(
        store_of(request), spec, policy_of(request.app.state), principal(request).name
    )
    return JSONResponse(_answer(job))


@router.get(
    "/list",
    response_model=list[ListedDockerJob],
    summary="docker-job's GET /list: the caller's scheduled jobs",
)
async def list_jobs(request: Request) -> list[dict[str, Any]]:
    """The caller's jobs scheduled through ``POST /schedule``, newest first
    (at most the newest 1000)."""
    _served(request)
    store, owner = store_of(request), principal(request).name
    found: list[Job] = []
    cursor: str | None = None
    while len(found) < MAX_LIST:
        page = await store.list_jobs(
            labels={DOCKERJOB_LABEL: DOCKERJOB_VALUE},
            owner=owner,
            limit=min(200, MAX_LIST - len(found)),
            cursor=cursor,
        )
        found += page.jobs
        cursor = page.next_cursor
        if cursor is None:
            break
    return [{**(one := _answer(job)), "schedule_for": one["scheduled_for"]} for job in found]


@router.get(
    "/status/{job_id}",
    response_class=Response,
    summary="docker-job's GET /status/{id}: SCHEDULED, RUNNING, DONE or FAILED",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string", "enum": list(STATUSES)}}}},
        404: {
            "model": ErrorResponse,
            "description": "`not_found`: no job of the caller's has that id (docker-job's "
            "words in `message` beside `error`).",
        },
    },
)
async def status(request: Request, job_id: str) -> Response:
    """One of the caller's jobs, in docker-job's words, as plain text; an
    unknown id, or another user's, is answered alike."""
    _served(request)
    store = store_of(request)
    try:
        if len(job_id) > 200:
            raise JobNotFound(job_id[:200])
        job = await store.get_job(await check_visible(store, principal(request), job_id))
    except JobNotFound:
        return _Refused(f"Job id {job_id[:200]} was not found", None, 404).response()
    return Response(STATUS[job.state], media_type="text/plain")
