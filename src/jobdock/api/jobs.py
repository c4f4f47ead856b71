"""The /v1 routes: thin translations between HTTP and the job stages."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from jobdock.api.auth import check_visible, principal
from jobdock.api.context import policy_of, settings_of, store_of
from jobdock.api.errors import JSON_BODY, responses
from jobdock.api.submit_path import DirectRoute
from jobdock.errors import IllegalTransition, InvalidRequest, InvalidSpec, JobNotFound
from jobdock.logs import read_log
from jobdock.models import STREAM_NUMBERS, Job, JobPage, JobState, RunResult, Stream
from jobdock.models.parsing import parse_spec
from jobdock.submit import submit, submit_job
from jobdock.wait import wait_for_job

router = APIRouter(prefix="/v1")

#: Media type of ``format=multiplexed`` logs: Docker's attach framing, an
#: 8-byte header (stream 1 or 2, three zero bytes, big-endian uint32 length)
#: before each piece of output.
MULTIPLEXED = "application/vnd.jobdock.multiplexed-stream"
_HEADER = struct.Struct(">BxxxI")


def _json(model: BaseModel, status: int = 200) -> Response:
    """A model as a JSON response, serialized once by pydantic (the route's
    ``response_model`` still documents it)."""
    return Response(model.model_dump_json(), status, media_type="application/json")


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"label: {pair!r} is not key=value", field="label")
        labels[key] = value
    return labels


#: The body of a submit is read by jobdock itself, so that any content type
#: (curl's default form type included) is taken as JSON; this tells OpenAPI.
_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}},
    }
}
#: What a submit answers besides the job (a spec the policy refuses, or
#: naming a secret its owner lacks, is an ``invalid_spec`` 422 too).
SUBMIT_ERRORS = responses(*JSON_BODY, InvalidSpec)


async def create_job(request: Request) -> Response:
    """Store a job and queue it for a worker. Answers 201 and the job, or 200
    and the existing job when its ``idempotency_key`` was submitted before."""
    spec = parse_spec(await request.body())
    policy = policy_of(request.app.state)
    submitted = await submit_job(store_of(request), spec, policy, principal(request).name)
    return _json(submitted.job, 201 if submitted.created else 200)


# The one door of every submit, called directly (api/submit_path.py says why).
router.add_api_route(
    "/jobs",
    create_job,
    methods=["POST"],
    status_code=201,
    response_model=Job,
    summary="Submit a job",
    openapi_extra=_SPEC_BODY,
    responses={
        200: {"model": Job, "description": "The job its idempotency_key made before."},
        **SUBMIT_ERRORS,
    },
    route_class_override=DirectRoute,
)


@router.get(
    "/jobs",
    response_model=JobPage,
    summary="List jobs, newest first",
    responses=responses(InvalidRequest),
)
async def list_jobs(
    request: Request,
    state: Annotated[list[JobState], Query()] = [],  # noqa: B006 (FastAPI copies it)
    label: Annotated[list[str], Query(description="key=value; repeat to require several")] = [],  # noqa: B006
    name: str | None = None,
    name_contains: Annotated[
        str | None,
        Query(max_length=200, description="Only jobs whose name holds this text, in any case."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = Query(None, pattern=r"^\d{1,18}$"),
    owner: Annotated[str | None, Query(description="Only this user's jobs.")] = None,
) -> JobPage:
    """Jobs matching every filter given, newest first; pass ``next_cursor``
    back as ``cursor`` for the next page. A user sees only their own jobs;
    an admin sees everyone's."""
    who = principal(request)
    if not who.admin:
        if owner not in (None, who.name):
            return JobPage(jobs=[])
        owner = who.name
    return await store_of(request).list_jobs(
        states=state,
        labels=_labels(label),
        name=name,
        limit=limit,
        cursor=cursor,
        owner=owner,
        name_contains=name_contains,
    )


@router.get(
    "/jobs/{job_id}", response_model=Job, summary="Get a job", responses=responses(JobNotFound)
)
async def get_job(job_id: str, request: Request) -> Job:
    """The whole record of a job, with its attempts."""
    job = await store_of(request).get_job(job_id)
    if not principal(request).may_see(job.owner):
        raise JobNotFound(job_id)
    return job


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    summary="Stop a job",
    responses={
        202: {"model": Job, "description": "Stop requested; the job is still running"},
        **responses(JobNotFound, IllegalTransition, InvalidRequest),
    },
)
async def cancel_job(
    job_id: str,
    request: Request,
    response: Response,
    kill: Annotated[
        bool, Query(description="Stop a running job with SIGKILL at once, without its grace.")
    ] = False,
) -> Job:
    """Cancel a job that has not started (200), or stop a running one: SIGTERM,
    its grace period, then SIGKILL (202, the job is still ``running``);
    ``kill=true``: SIGKILL at once, also while an earlier stop waits out the
    grace. A finished job answers 409."""
    store, who = store_of(request), principal(request)
    await check_visible(store, who, job_id)
    job = await store.cancel_job(job_id, time.time(), actor=who.name, kill=kill)
    if not job.terminal:
        response.status_code = 202
    return job


@router.get(
    "/jobs/{job_id}/wait",
    response_model=Job,
    summary="Wait for a job to finish",
    responses=responses(JobNotFound, InvalidRequest),
)
async def wait_job(
    job_id: str,
    request: Request,
    timeout: Annotated[float, Query(ge=0, le=3600)] = 30.0,
) -> Job:
    """The job once finished, or as it is after ``timeout`` seconds (check
    its ``state``)."""
    settings, store = settings_of(request), store_of(request)
    await check_visible(store, principal(request), job_id)
    return await wait_for_job(store, job_id, timeout, settings.poll_seconds)


@router.get(
    "/jobs/{job_id}/logs",
    summary="Read or follow a job's output",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}, MULTIPLEXED: {}}},
        **responses(JobNotFound, InvalidRequest),
    },
)
async def job_logs(
    job_id: str,
    request: Request,
    stream: Literal["stdout", "stderr", "both"] = "both",
    follow: bool = False,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    attempt: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    format: Literal["raw", "multiplexed"] = "raw",
) -> StreamingResponse:
    """The output of the job's latest attempt (or ``attempt``) from byte
    ``offset`` of the chosen stream (of both merged in order, for ``both``).
    With ``follow=true`` the response streams output as the job writes it and
    ends when the attempt ends. ``format=multiplexed`` frames each piece with
    its stream, like Docker's attach stream."""
    store = store_of(request)
    await check_visible(store, principal(request), job_id)
    chosen = None if stream == "both" else Stream(stream)
    # Answer 404 now, not in the middle of a 200.
    await store.read_logs(job_id, attempt=attempt, stream=chosen, offset=offset, limit=0)
    chunks = read_log(
        store,
        job_id,
        stream=chosen,
        offset=offset,
        follow=follow,
        attempt=attempt,
        poll_seconds=settings_of(request).poll_seconds,
    )

    async def raw() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield chunk.data

    async def multiplexed() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield _HEADER.pack(STREAM_NUMBERS[chunk.stream], len(chunk.data)) + chunk.data

    if format == "multiplexed":
        return StreamingResponse(multiplexed(), media_type=MULTIPLEXED)
    return StreamingResponse(raw(), media_type="application/octet-stream")


@router.post(
    "/run",
    response_model=RunResult,
    summary="Run a job and wait for its output",
    openapi_extra=_SPEC_BODY,
    responses=SUBMIT_ERRORS,
)
async def run_job(request: Request) -> RunResult:
    """Submit a job, wait until it ends, and answer its state, exit code,
    stdout and stderr (each cut at the server's ``run_output_limit``)."""
    spec = parse_spec(await request.body())
    store, settings = store_of(request), settings_of(request)
    job = await submit(store, spec, policy_of(request.app.state), principal(request).name)
    job = await wait_for_job(store, job.id, float("inf"), settings.poll_seconds)
    limit = settings.run_output_limit
    out = {Stream.STDOUT: bytearray(), Stream.STDERR: bytearray()}
    truncated = False
    async for chunk in read_log(store, job.id):
        buffer = out[chunk.stream]
        room = limit - len(buffer)
        if len(chunk.data) > room:
            truncated = True
        buffer.extend(chunk.data[: max(room, 0)])
    return RunResult(
        job=job,
        stdout=out[Stream.STDOUT].decode(errors="replace"),
        stderr=out[Stream.STDERR].decode(errors="replace"),
        truncated=truncated,
    )
