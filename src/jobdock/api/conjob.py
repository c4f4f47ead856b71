"""ConJob's interface: ``GET|POST /job/run?image=...`` runs an image as a job
and answers its output, so that a ConJob user's curl scripts work unchanged.

The POST body is the job's input: its command argument, as ConJob passes it,
or its stdin with ``input=stdin``. The answer is the output as plain text (both
streams, in the order written), or with ``Accept: application/json``
ConJob's ``{"conclusion", "output", "exitCode", "message"}`` with ConJob's
message texts. The status says how it ended: 200 success, 400 non-zero exit,
404 image not found, 408 killed for its timeout, 500 anything else; and 503
(``REJECTED``) at once, without a job, over the server's ConJob limits
(``api/conjob_limits.py``) or when no live worker could start it (no
container engine answers, say).

ConJob's defaults hold: the image is pulled (``pull=always``), and
``use_docker_cache`` keeps a volume at ``/var/lib/docker`` per image and
caller. The caller's ConJob secrets of the image (``POST /secrets``,
``api/conjob_secrets.py``) are mounted read-only at
``/run/build/secrets/secrets``. docs/containers.md has the whole mapping.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ValidationError

from jobdock.api.auth import principal
from jobdock.api.conjob_limits import RunLimits
from jobdock.api.conjob_secrets import SECRETS_DIR, secret_ref
from jobdock.api.conjob_secrets import router as secrets_router
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
router.include_router(secrets_router)

#: How a job ended, in ConJob's words.
Verdict = Literal["SUCCESS", "FAILURE", "NOT_FOUND", "TIMED_OUT", "REJECTED", "UNKNOWN"]

#: ConJob's pull values, as jobdock's pull policies.
_PULL = {"always": "always", "never": "never", "absent": "if-not-present"}

#: ConJob's message of each conclusion (its users' scripts match on them).
MESSAGES: dict[Verdict, str] = {
    "SUCCESS": "Job run successful.",
    "FAILURE": "Job run failed.",
    "NOT_FOUND": "Job not found.",
    "TIMED_OUT": "Job exceeded maximum allowed duration.",
    "REJECTED": "Concurrent job limit exceeded. Please wait then try again.",
    "UNKNOWN": "Unknown outcome.",
}
_STATUS: dict[Verdict, int] = {
    "SUCCESS": 200,
    "FAILURE": 400,
    "NOT_FOUND": 404,
    "TIMED_OUT": 408,
    "REJECTED": 503,
    "UNKNOWN": 500,
}
#: Where use_docker_cache's volume is mounted (an inner dockerd's data).
DOCKER_CACHE_PATH = "/var/lib/docker"


def conclusion_of(job: Job) -> tuple[Verdict, int]:
    """ConJob's conclusion of a finished job and the exit code it reports.
    A job that timed out but exited on its own within the kill grace keeps
    its exit and conclusion; one the stop ended (by signal) is ``TIMED_OUT``
    with -1, as in ConJob."""
    exit_code = job.exit_code if job.exit_code is not None else -1
    if job.state is JobState.SUCCEEDED:
        return "SUCCESS", exit_code
    if job.reason is Reason.IMAGE_NOT_FOUND:
        return "NOT_FOUND", -1
    if job.reason is Reason.TIMEOUT:
        if job.exit_code is None or job.signal is not None:
            return "TIMED_OUT", -1
        return ("SUCCESS" if job.exit_code == 0 else "FAILURE"), job.exit_code
    if job.reason in (Reason.EXITED, Reason.SIGNALED, Reason.OOM, Reason.SPAWN_ERROR):
        return "FAILURE", exit_code
    return "UNKNOWN", exit_code


def docker_cache(image: str) -> dict[str, str]:
    """use_docker_cache's cache: one name per image (the volume is the
    caller's own: runtimes/container.py's cache_volume adds the owner)."""
    digest = hashlib.sha256(image.encode()).hexdigest()[:32]
    return {"name": f"conjob-docker-{digest}", "path": DOCKER_CACHE_PATH}


def _image(image: str) -> str:
    try:
        return JobSpec(image=image).image or image
    except ValidationError as exc:
        raise invalid_spec(exc) from None


def _spec(fields: dict[str, Any], body: bytes, to_stdin: bool) -> JobSpec:
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


async def _fields(
    request: Request, image: str, pull: str, use_docker_cache: bool, remove_image: bool
) -> dict[str, Any]:
    """The job's spec fields from ConJob's parameters and the server's settings."""
    settings: Settings = request.app.state.settings
    fields: dict[str, Any] = {
        "image": image,
        "pull": _PULL[pull],
        "timeout": settings.conjob_timeout,
        "kill_grace": min(settings.conjob_kill_grace, settings.max_kill_grace),
        "container_runtime": settings.conjob_container_runtime,
        "remove_image": remove_image,
        "caches": [docker_cache(image)] if use_docker_cache else [],
    }
    ref = await secret_ref(request.app.state.store, principal(request).name, image)
    if ref is not None:
        fields.update(secrets=[ref], secrets_path=SECRETS_DIR)
    return fields


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
        408: _outcome("The job was killed for its timeout."),
        422: _INVALID[422],
        500: _outcome("The job ended otherwise (cancelled, lost)."),
        503: _outcome(
            "Rejected: over the server's ConJob limits, or no live worker could start the "
            "job (no container engine)."
        ),
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
    pull: Annotated[
        Literal["always", "never", "absent"],
        Query(description="When to pull the image (ConJob's default: always)."),
    ] = "always",
    use_docker_cache: Annotated[
        bool, Query(description="Keep /var/lib/docker in a volume of yours for this image.")
    ] = True,
    remove: Annotated[
        bool, Query(description="Accepted for ConJob; the container is always removed.")
    ] = False,
    remove_image: Annotated[
        bool, Query(description="Remove the image after the run, unless another container uses it.")
    ] = False,
    input: Annotated[
        Literal["arg", "stdin"],
        Query(description="Where the POST body goes: the command argument, or stdin."),
    ] = "arg",
) -> Response:
    store: Store = request.app.state.store
    settings: Settings = request.app.state.settings
    image = _image(image)
    fields = await _fields(request, image, pull, use_docker_cache, remove_image)
    spec = _spec(fields, await request.body(), input == "stdin")
    reason = await waiting_of(request).reason(spec)
    if reason is not None:
        return _answer(request, "REJECTED", b"", -1, reason, {})
    limits: RunLimits = request.app.state.conjob_limits
    async with limits.slot() as admitted:
        if not admitted:
            return _answer(request, "REJECTED", b"", -1, MESSAGES["REJECTED"], {})
        job = await submit(store, spec, policy_of(request.app.state), principal(request).name)
        job = await wait_for_job(store, job.id, float("inf"), settings.poll_seconds)
    output = bytearray()
    async for chunk in read_log(store, job.id):
        output += chunk.data[: max(settings.run_output_limit - len(output), 0)]
    conclusion, exit_code = conclusion_of(job)
    headers = {"X-Jobdock-Job-Id": job.id}
    return _answer(request, conclusion, bytes(output), exit_code, MESSAGES[conclusion], headers)


def _answer(
    request: Request,
    conclusion: Verdict,
    output: bytes,
    exit_code: int,
    message: str,
    headers: dict[str, str],
) -> Response:
    """The output as plain text, or ConJob's JSON if the caller accepts it. A
    rejected run, which has no output, answers its message as the text."""
    status = _STATUS[conclusion]
    if "application/json" in request.headers.get("accept", ""):
        body = Conclusion(
            conclusion=conclusion,
            output=output.decode(errors="replace"),
            exitCode=exit_code,
            message=message,
        )
        return Response(body.model_dump_json(), status, headers, media_type="application/json")
    if conclusion == "REJECTED":
        output = f"{message}\n".encode()
    return Response(output, status, headers, media_type="text/plain; charset=utf-8")
