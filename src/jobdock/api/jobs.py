"""The /v1 routes: thin translations between HTTP and the job stages."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from jobdock.api.auth import check_visible, principal
from jobdock.api.context import policy_of, settings_of, store_of, waiting_of
from jobdock.api.errors import JSON_BODY, responses
from jobdock.api.submit_path import DirectRoute
from jobdock.errors import (
    AmbiguousReference,
    CannotStart,
    IllegalTransition,
    InvalidRequest,
    InvalidSpec,
    JobNotFound,
)
from jobdock.logs import Timestamps, read_log, since_time, tail_offset
from jobdock.models import Job, JobPage, JobState, RunResult, Stream
from jobdock.models.frames import frame
from jobdock.models.parsing import parse_spec
from jobdock.store.protocol import Store
from jobdock.submit import submit, submit_job
from jobdock.wait import wait_for_job

router = APIRouter(prefix="/v1")

#: Media type of ``format=multiplexed`` logs (models/frames.py).
MULTIPLEXED = "application/vnd.jobdock.multiplexed-stream"
#: The most lines ``tail`` takes.
MAX_TAIL = 1_000_000


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
    await waiting_of(request).explain([submitted.job])
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
    page = await store_of(request).list_jobs(
        states=state,
        labels=_labels(label),
        name=name,
        limit=limit,
        cursor=cursor,
        owner=owner,
        name_contains=name_contains,
    )
    await waiting_of(request).explain(page.jobs)
    return page


@router.get(
    "/jobs/{job_id}",
    response_model=Job,
    summary="Get a job",
    responses=responses(JobNotFound, AmbiguousReference),
)
async def get_job(job_id: str, request: Request) -> Job:
    """The whole record of a job, with its attempts. ``job_id`` here and in
    every route below may also be a unique prefix of the id (4 characters or
    more) or the name of one job; one that matches several of the jobs the
    caller may see answers 400 ``ambiguous_reference`` with their ids."""
    store = store_of(request)
    job = await store.get_job(await check_visible(store, principal(request), job_id))
    await waiting_of(request).explain([job])
    return job


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    summary="Delete a finished job",
    responses=responses(JobNotFound, IllegalTransition),
)
async def delete_job(job_id: str, request: Request) -> Response:
    """Delete a finished job with its attempts and logs (as ``jobdock run
    --rm`` does once it has printed them); a job that has not finished
    answers 409."""
    store = store_of(request)
    await check_visible(store, principal(request), job_id)
    await store.delete_job(job_id)
    return Response(status_code=204)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    summary="Stop a job",
    responses={
        202: {"model": Job, "description": "Stop requested; the job is still running"},
        **responses(JobNotFound, AmbiguousReference, IllegalTransition, InvalidRequest),
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
    job_id = await check_visible(store, who, job_id)
    job = await store.cancel_job(job_id, time.time(), actor=who.name, kill=kill)
    if not job.terminal:
        response.status_code = 202
    return job


@router.get(
    "/jobs/{job_id}/wait",
    response_model=Job,
    summary="Wait for a job to finish",
    responses=responses(JobNotFound, AmbiguousReference, InvalidRequest),
)
async def wait_job(
    job_id: str,
    request: Request,
    timeout: Annotated[float, Query(ge=0, le=3600)] = 30.0,
) -> Job:
    """The job once finished, or as it is after ``timeout`` seconds (check
    its ``state``)."""
    settings, store = settings_of(request), store_of(request)
    job_id = await check_visible(store, principal(request), job_id)
    job = await wait_for_job(store, job_id, timeout, settings.poll_seconds)
    await waiting_of(request).explain([job])
    return job


@router.get(
    "/jobs/{job_id}/logs",
    summary="Read or follow a job's output",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}, MULTIPLEXED: {}}},
        **responses(JobNotFound, AmbiguousReference, InvalidRequest),
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
    tail: Annotated[
        int | None, Query(ge=0, le=MAX_TAIL, description="Only the last N lines.")
    ] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only output that arrived since: seconds since the epoch, "
            "a duration before now (10m, 2h) or an RFC 3339 time.",
        ),
    ] = None,
    timestamps: Annotated[
        bool, Query(description="Each line after its arrival time (RFC 3339, UTC) and a space.")
    ] = False,
) -> StreamingResponse:
    """The output of the job's latest attempt (or ``attempt``) from byte
    ``offset`` of the chosen stream (of both merged in order, for ``both``),
    or from where its last ``tail`` lines or what arrived ``since`` begin
    (the latest of these). With ``follow=true`` the response streams output
    as the job writes it and ends when the attempt ends.
    ``format=multiplexed`` frames each piece with its stream, like Docker's
    attach stream; ``timestamps=true`` prefixes lines as ``docker logs -t``."""
    store = store_of(request)
    job_id = await check_visible(store, principal(request), job_id)
    chosen = None if stream == "both" else Stream(stream)
    # Answer 404 now, not in the middle of a 200.
    first = await store.read_logs(job_id, attempt=attempt, stream=chosen, offset=offset, limit=0)
    start = await _start(store, job_id, first.attempt, chosen, offset, tail, since)
    chunks = read_log(
        store,
        job_id,
        stream=chosen,
        offset=start,
        follow=follow,
        attempt=attempt,
        poll_seconds=settings_of(request).poll_seconds,
    )
    stamps = Timestamps() if timestamps else None

    async def pieces() -> AsyncIterator[tuple[Stream, bytes]]:
        async for chunk in chunks:
            yield chunk.stream, chunk.data if stamps is None else stamps.stamp(chunk)

    async def raw() -> AsyncIterator[bytes]:
        async for _, data in pieces():
            yield data

    async def multiplexed() -> AsyncIterator[bytes]:
        async for stream_of, data in pieces():
            yield frame(stream_of, data)

    if format == "multiplexed":
        return StreamingResponse(multiplexed(), media_type=MULTIPLEXED)
    return StreamingResponse(raw(), media_type="application/octet-stream")


async def _start(
    store: Store,
    job_id: str,
    attempt: int,
    stream: Stream | None,
    offset: int,
    tail: int | None,
    since: str | None,
) -> int:
    """Where a read of the log begins: at ``offset``, or later where the
    last ``tail`` lines or what arrived ``since`` begin."""
    when = None
    if since is not None:
        try:
            when = since_time(since, time.time())
        except ValueError as exc:
            raise InvalidRequest(f"since: {exc}", field="since") from None
    if attempt == 0:
        return offset
    if tail is not None:
        lines = await tail_offset(store, job_id, attempt=attempt, stream=stream, lines=tail)
        offset = max(offset, lines)
    if when is not None:
        arrived = await store.log_offset_at(job_id, attempt=attempt, stream=stream, since=when)
        offset = max(offset, arrived)
    return offset


@router.post(
    "/run",
    response_model=RunResult,
    summary="Run a job and wait for its output",
    openapi_extra=_SPEC_BODY,
    responses={**SUBMIT_ERRORS, **responses(CannotStart)},
)
async def run_job(request: Request) -> RunResult:
    """Submit a job, wait until it ends, and answer its state, exit code,
    stdout and stderr (each cut at the server's ``run_output_limit``). A job
    no live worker could start (no container engine for an image, no worker
    with its ``requires``) is refused at once: 503, ``cannot_start``."""
    spec = parse_spec(await request.body())
    store, settings = store_of(request), settings_of(request)
    reason = await waiting_of(request).reason(spec)
    if reason is not None:
        raise CannotStart(reason)
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
