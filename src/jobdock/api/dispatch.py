"""Dispatch templates over HTTP (docs/dispatch.md): ``POST
/v1/dispatch/{template}`` and docker-job-dispatcher's ``POST /job/{template}``
turn a request into a job with the template's jq filter; ``POST
/v1/templates/{name}/test`` shows the spec a request would make."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobdock.api.auth import check_visible, principal
from jobdock.api.context import policy_of, store_of
from jobdock.api.errors import JSON_BODY, responses
from jobdock.dispatch import Dispatcher, DispatchRequest
from jobdock.errors import (
    AmbiguousReference,
    InvalidRequest,
    JobNotFound,
    TemplateFailed,
    TemplateNotFound,
    TemplateOutputTooLarge,
    TemplateSpecInvalid,
    TemplateTimeout,
)
from jobdock.models import Job, JobState
from jobdock.models.parsing import describe_error, not_json

router = APIRouter(tags=["dispatch"])


class TemplateInfo(BaseModel):
    """A dispatch template the server offers."""

    name: str


class TemplateList(BaseModel):
    """The server's dispatch templates, by name."""

    templates: list[TemplateInfo]


class TemplateTest(BaseModel):
    """A request to try a template on, as the filter would see it."""

    model_config = ConfigDict(extra="forbid")

    body: Any = Field(None, description="The request's body (any JSON value).")
    path: str | None = Field(None, description="$path; default /job/NAME.")
    query: dict[str, str] = Field(default_factory=dict, description="$query.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers; $headers gets the allow-listed ones."
    )


#: The route reads its body itself (any content type is JSON), so the model
#: is in no component of the OpenAPI document: its schema goes inline.
_TEST_SCHEMA = TemplateTest.model_json_schema()


class TemplateResult(BaseModel):
    """The spec a template made, after the server's policy; not submitted."""

    template: str
    spec: dict[str, Any]


def _test_request(body: bytes) -> TemplateTest:
    # Read here, as a submit's body is: any content type is taken as JSON.
    try:
        return TemplateTest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise not_json(first["msg"]) from None
        field, message = describe_error(first)
        raise InvalidRequest(message, field=field) from None


def dispatcher_of(request: Request) -> Dispatcher:
    """The app's dispatcher (api/app.py's lifespan made it)."""
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


#: What a template's run may answer: its filter failed, timed out, made too
#: much output or an invalid spec (400), no such template (404), a body too
#: large for the filter (422).
_TEMPLATE_ERRORS = (
    *JSON_BODY,
    TemplateFailed,
    TemplateTimeout,
    TemplateOutputTooLarge,
    TemplateSpecInvalid,
    TemplateNotFound,
    InvalidRequest,
)
_ANY_JSON_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {}}},
        "description": "Any JSON value: the filter's input (none: null).",
    }
}
_DISPATCH: dict[str, Any] = {
    "status_code": 201,
    "response_model": Job,
    "responses": {
        200: {
            "model": Job,
            "description": "The job an earlier request with its idempotency_key created.",
        },
        **responses(*_TEMPLATE_ERRORS),
    },
    "openapi_extra": _ANY_JSON_BODY,
}


async def _dispatch(request: Request, template: str | None) -> Response:
    submitted = await dispatcher_of(request).submit(
        store_of(request),
        template,
        DispatchRequest(
            body=await request.body(),
            path=request.url.path,
            query=dict(request.query_params),
            headers=dict(request.headers),
        ),
        principal(request).name,
        policy_of(request.app.state),
    )
    status = 201 if submitted.created else 200
    return Response(submitted.job.model_dump_json(), status, media_type="application/json")


@router.post(
    "/v1/dispatch/{template}",
    **_DISPATCH,
    summary="Submit the job a template makes of this request",
)
async def dispatch(template: str, request: Request) -> Response:
    """Run the template's jq filter on the body (any JSON) and submit the
    spec it makes, as the caller: 201 and the job."""
    return await _dispatch(request, template)


@router.post(
    "/v1/dispatch/{template}/{rest:path}",
    **_DISPATCH,
    summary="The same, with more path ($path is the whole path)",
)
async def dispatch_path(template: str, rest: str, request: Request) -> Response:
    return await _dispatch(request, template)


@router.post(
    "/job",
    **_DISPATCH,
    summary="docker-job-dispatcher's POST /job: the dispatch_default_template",
)
async def dispatch_default(request: Request) -> Response:
    """Run the ``dispatch_default_template`` on the body (404 when none is set)."""
    return await _dispatch(request, None)


@router.post(
    "/job/{template}",
    **_DISPATCH,
    summary="docker-job-dispatcher's style: the first segment names the template",
)
async def dispatch_job(template: str, request: Request) -> Response:
    """The template named by the first segment; when there is none of that
    name, the ``dispatch_default_template`` (if set), with ``$subpath``
    all that follows ``/job/``."""
    return await _dispatch(request, dispatcher_of(request).for_path(template))


@router.post(
    "/job/{template}/{rest:path}",
    **_DISPATCH,
    summary="docker-job-dispatcher's style, with more path",
)
async def dispatch_job_path(template: str, rest: str, request: Request) -> Response:
    return await _dispatch(request, dispatcher_of(request).for_path(template))


class JobSummary(BaseModel):
    """docker-job-dispatcher's view of a job: ``status`` in Docker's words
    (``Created``, ``Up``, ``Restarting (N)``, ``Exited (N)``, ``Dead``)."""

    id: str = Field(description="The id (or name) asked for, as the dispatcher echoes it.")
    created: int = Field(description="When the job was submitted, in seconds since 1970.")
    status: str


@router.get(
    "/job/{job_id}",
    response_model=JobSummary,
    summary="docker-job-dispatcher's GET /job/{id}: a job's state, in Docker's words",
    responses=responses(JobNotFound, AmbiguousReference),
)
async def job_summary(job_id: str, request: Request) -> JobSummary:
    """A job of the caller's, by id, id prefix or name (a Docker manifest's
    ``Name`` is the job's name); another user's job is a 404, as an
    unknown one is."""
    store = store_of(request)
    job = await store.get_job(await check_visible(store, principal(request), job_id))
    return JobSummary(id=job_id, created=int(job.created_at.timestamp()), status=docker_status(job))


def docker_status(job: Job) -> str:
    """A job's state as Docker's container status says it; an exit by a
    signal is 128 + the signal, as a shell and Docker write it."""
    code = job.exit_code if job.signal is None else 128 + job.signal
    if job.state in (JobState.SCHEDULED, JobState.QUEUED):
        return "Created"
    if job.state is JobState.RUNNING:
        return "Up"
    if job.state is JobState.RETRYING:
        return f"Restarting ({code})" if code is not None else "Restarting"
    return f"Exited ({code})" if code is not None else "Dead"


@router.get("/v1/templates", response_model=TemplateList, summary="List dispatch templates")
async def list_templates(request: Request) -> TemplateList:
    names = sorted(dispatcher_of(request).templates)
    return TemplateList(templates=[TemplateInfo(name=name) for name in names])


@router.post(
    "/v1/templates/{name}/test",
    response_model=TemplateResult,
    summary="The spec a request would make; nothing is submitted",
    responses=responses(*_TEMPLATE_ERRORS),
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": _TEST_SCHEMA}}},
    },
)
async def test_template(name: str, request: Request) -> TemplateResult:
    """Run the template on ``body`` (with ``path``, ``query`` and
    ``headers``) and check the spec as a submit by the caller would: 200 and
    the spec, or the error the request would get."""
    given = _test_request(await request.body())
    spec = await dispatcher_of(request).test(
        store_of(request),
        name,
        DispatchRequest(
            body=json.dumps(given.body).encode(),
            path=given.path or f"/job/{name}",
            query=given.query,
            headers=given.headers,
        ),
        principal(request).name,
        policy_of(request.app.state),
    )
    return TemplateResult(template=name, spec=spec.model_dump(mode="json", exclude_defaults=True))
