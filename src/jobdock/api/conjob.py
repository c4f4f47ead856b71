"""ConJob's interface: ``GET|POST /job/run?image=...`` runs an image as a job
and answers its output, so that a ConJob user's curl scripts work unchanged.

The POST body is the job's input: its command argument, as ConJob passes it,
or its stdin with ``input=stdin``. The answer is the output as plain text (both
streams, in the order written), or with ``Accept: application/json``
ConJob's ``{"conclusion", "output", "exitCode", "message"}``. The status says
how it ended: 200 success, 400 non-zero exit, 404 image not found, 408 timed
out, 500 anything else; and 503 (``REJECTED``) at once, without a job, when
no live worker could start it (no container engine answers, say).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ValidationError

from jobdock.api.auth import principal
from jobdock.api.context import policy_of, waiting_of
from jobdock.api.errors import responses
from jobdock.errors import InvalidRequest, InvalidSpec, RequestTooLarge
from jobdock.logs import read_log
from jobdock.models import Job, JobSpec, JobState, Reason
from jobdock.models.parsing import invalid_spec
from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.submit import submit
from jobdock.wait import wait_for_job

router = APIRouter(tags=["ConJob"])

#: How a job ended, in ConJob's words.
Verdict = Literal["SUCCESS", "FAILURE", "NOT_FOUND", "TIMED_OUT", "REJECTED", "UNKNOWN"]

#: ConJob's pull values, as jobdock's pull policies.
_PULL = {"always": "always", "never": "never", "absent": "if-not-present"}


def conclusion_of(job: Job) -> tuple[Verdict, int]:
    """ConJob's conclusion of a finished job and the HTTP status it answers."""
    if job.state is JobState.SUCCEEDED:
        return "SUCCESS", 200
    if job.reason is Reason.IMAGE_NOT_FOUND:
        return "NOT_FOUND", 404
    if job.reason is Reason.TIMEOUT:
        return "TIMED_OUT", 408
    if job.reason in (Reason.EXITED, Reason.SIGNALED, Reason.OOM, Reason.SPAWN_ERROR):
        return "FAILURE", 400
    return "UNKNOWN", 500


def _spec(image: str, pull: str, body: bytes, to_stdin: bool, timeout: float | None) -> JobSpec:
    fields: dict[str, Any] = {"image": image, "pull": _PULL[pull], "timeout": timeout}
    if to_stdin:
        fields["stdin_base64"] = base64.b64encode(body).decode()
    elif body:
        try:
            fields["command"] = [body.decode()]
        except UnicodeDecodeError:
            raise InvalidRequest(
                "the body is not UTF-8 text: send binary input with input=stdin", field="body"
            ) from None
    try:
        return JobSpec(**fields)
    except ValidationError as exc:
        raise invalid_spec(exc) from None


class Conclusion(BaseModel):
    """ConJob's JSON answer (with ``Accept: application/json``)."""

    conclusion: Verdict
    output: str
    exitCode: int  # ConJob's name
    message: str


def _outcome(description: str) -> dict[str, Any]:
    """A response of a finished job: its output, or ConJob's JSON."""
    return {
        "description": description,
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": Conclusion.model_json_schema()},
        },
    }


_INVALID = responses(InvalidSpec, InvalidRequest)
_RUN_IMAGE: dict[str, Any] = {
    "summary": "Run an image and answer its output (ConJob-compatible)",
    "response_class": Response,
    "response_model": None,
    "responses": {
        200: _outcome("The job succeeded; its output."),
        400: _outcome("The job failed (non-zero exit)."),
        404: _outcome("The image was not found."),
        408: _outcome("The job timed out."),
        422: _INVALID[422],
        500: _outcome("The job ended otherwise (cancelled, lost)."),
        503: _outcome("Rejected: no live worker could start the job (no container engine)."),
    },
}


@router.post(
    "/job/run",
    operation_id="conjob_run_post",
    openapi_extra={
        "requestBody": {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The command argument, or with input=stdin the job's stdin.",
        }
    },
    **{**_RUN_IMAGE, "responses": {**_RUN_IMAGE["responses"], **responses(RequestTooLarge)}},
)
@router.get("/job/run", operation_id="conjob_run_get", **_RUN_IMAGE)
async def run_image(
    request: Request,
    image: Annotated[str, Query(description="The image; ':latest' when no tag is given.")],
    pull: Annotated[Literal["always", "never", "absent"], Query()] = "absent",
    remove: Annotated[
        bool, Query(description="Accepted for ConJob; the container is always removed.")
    ] = True,
    input: Annotated[
        Literal["arg", "stdin"],
        Query(description="Where the POST body goes: the command argument, or stdin."),
    ] = "arg",
) -> Response:
    store: Store = request.app.state.store
    settings: Settings = request.app.state.settings
    spec = _spec(image, pull, await request.body(), input == "stdin", settings.conjob_timeout)
    reason = await waiting_of(request).reason(spec)
    if reason is not None:
        return _answer(request, "REJECTED", 503, b"", -1, reason, {})
    job = await submit(store, spec, policy_of(request.app.state), principal(request).name)
    job = await wait_for_job(store, job.id, float("inf"), settings.poll_seconds)
    output = bytearray()
    async for chunk in read_log(store, job.id):
        output += chunk.data[: max(settings.run_output_limit - len(output), 0)]
    conclusion, status = conclusion_of(job)
    exit_code = job.exit_code if job.exit_code is not None else -1
    headers = {"X-Jobdock-Job-Id": job.id}
    return _answer(request, conclusion, status, bytes(output), exit_code, job.message, headers)


def _answer(
    request: Request,
    conclusion: Verdict,
    status: int,
    output: bytes,
    exit_code: int,
    message: str | None,
    headers: dict[str, str],
) -> Response:
    """The output as plain text, or ConJob's JSON if the caller accepts it. A
    rejected run, which has no output, answers its message as the text."""
    if "application/json" in request.headers.get("accept", ""):
        body = Conclusion(
            conclusion=conclusion,
            output=output.decode(errors="replace"),
            exitCode=exit_code,
            message=message or "",
        )
        return Response(body.model_dump_json(), status, headers, media_type="application/json")
    if conclusion == "REJECTED":
        output = f"{message}\n".encode()
    return Response(output, status, headers, media_type="text/plain; charset=utf-8")
