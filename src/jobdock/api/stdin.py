"""``POST /v1/jobs/{id}/stdin``: the stdin of a job submitted with
``stdin_stream``, sent as its client reads it (``jobdock run -i``); ``GET``
of the same path: the stdin given with a job's spec, read back (``jobdock
repro`` runs the job again with it).

The body is read as it arrives and stored piece by piece (job_stdin.py),
so it is bounded by ``max_stdin_stream``, not by ``max_request_body``
(api/limits.py lets this one route's body through). Only the job's owner
may send it; another user's job is answered as one that does not exist.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from jobdock.api.auth import principal
from jobdock.api.context import settings_of, store_of
from jobdock.api.errors import responses
from jobdock.errors import Forbidden, InvalidRequest, JobNotFound, StdinClosed, StdinTooLarge
from jobdock.job_stdin import receive

router = APIRouter(prefix="/v1")

#: The path of the route, for the body limit that does not apply to it.
PATH = re.compile(r"/v1/jobs/[^/]+/stdin")

_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class StdinReceipt(BaseModel):
    """What the job's stdin holds after a request."""

    job_id: str
    bytes: int = Field(description="How many bytes the job's stdin holds, this body's included.")
    eof: bool = Field(description="Whether the job's stdin is closed (it reads end-of-file).")


@router.post(
    "/jobs/{job_id}/stdin",
    response_model=StdinReceipt,
    summary="Send a job's stdin as it is read",
    openapi_extra=_BODY,
    responses=responses(JobNotFound, Forbidden, StdinClosed, StdinTooLarge, InvalidRequest),
)
async def send_stdin(
    job_id: str,
    request: Request,
    eof: Annotated[
        bool, Query(description="Close the job's stdin once this body has been stored.")
    ] = False,
) -> StdinReceipt | Response:
    """Append the body (any length, e.g. chunked) to the stdin of a job
    submitted with ``stdin_stream: true``, storing it as it arrives: the job
    may already be running and reads each piece as it comes. Send more with
    further requests; ``eof=true`` closes the input after this body (an
    empty body just closes it). A finished job, or a closed input, answers
    409; more than the server's ``max_stdin_stream`` in all answers 413
    (what came before the limit is kept)."""
    store, who = store_of(request), principal(request)
    job = await store.get_job(job_id)
    if not who.may_see(job.owner):
        raise JobNotFound(job_id)
    if job.owner != who.name:
        raise Forbidden(f"only the job's owner ({job.owner}) may send its stdin")
    if not job.spec.stdin_stream:
        raise StdinClosed(job_id, "it was not submitted with stdin_stream: true")
    limit = settings_of(request).max_stdin_stream
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise StdinTooLarge(job_id, limit)
    try:
        size = await receive(store, job_id, request.stream(), limit=limit, eof=eof)
    except ClientDisconnect:
        # The client went away: what it sent is kept, the input stays open.
        return Response(status_code=400)
    return StdinReceipt(job_id=job_id, bytes=size, eof=eof)


@router.get(
    "/jobs/{job_id}/stdin",
    summary="Read the stdin a job was given",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        **responses(JobNotFound, StdinClosed),
    },
)
async def get_stdin(job_id: str, request: Request) -> Response:
    """The stdin given with the job's spec (``stdin`` or ``stdin_base64``;
    empty: none), to whoever may read the job; another user's job is
    answered as one that does not exist. A streamed stdin (``stdin_stream``)
    is not kept once the job has finished: 409."""
    store, who = store_of(request), principal(request)
    job = await store.get_job(job_id)
    if not who.may_see(job.owner):
        raise JobNotFound(job_id)
    if job.spec.stdin_stream:
        raise StdinClosed(job_id, "it was streamed (stdin_stream), and is not kept")
    return Response(await store.job_stdin(job_id), media_type="application/octet-stream")
