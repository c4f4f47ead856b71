"""Submitting a job: validate the spec, apply the server's policy, store it."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from jobdock.errors import InvalidJson, InvalidSpec, UnknownSecret
from jobdock.models import ANONYMOUS, Job, JobSpec
from jobdock.settings import Settings
from jobdock.store.protocol import NewJob, Store


def new_job_id() -> str:
    """A new job id: 16 hex digits (64 random bits)."""
    return secrets.token_hex(8)


def parse_spec(body: bytes) -> JobSpec:
    """A JobSpec from a JSON document; raises InvalidJson, or InvalidSpec
    naming the first bad field."""
    try:
        return JobSpec.model_validate_json(body)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise InvalidJson(f"the body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise invalid_spec(exc) from None


_NAMED_FIELD = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


def describe_error(error: Mapping[str, Any], skip: int = 0) -> tuple[str | None, str]:
    """The dotted field name and a one-line message of one pydantic error
    (``skip`` leading parts of its location are dropped)."""
    field = ".".join(str(part) for part in tuple(error.get("loc", ()))[skip:]) or None
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    named = _NAMED_FIELD.match(message)
    if field is None and named:
        # A check across fields names the one it is about: "command: ...".
        field, message = named.group(1), message[named.end() :]
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    elif error.get("type") == "missing":
        message = "field required"
    return field, f"{field}: {message}" if field else message


def invalid_spec(exc: ValidationError) -> InvalidSpec:
    """The InvalidSpec for pydantic's first complaint about a spec."""
    field, message = describe_error(exc.errors()[0])
    return InvalidSpec(message, field=field)


#: A run_at this far in the past is still taken as "now" (clocks differ a little).
PAST_TOLERANCE = 1.0


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submitted job, and whether this submit created it (False: its
    idempotency key returned the job an earlier submit of the same owner
    created)."""

    job: Job
    created: bool


async def submit_job(
    store: Store, spec: JobSpec, settings: Settings, owner: str = ANONYMOUS
) -> Submitted:
    """Store a new job of ``owner`` for ``spec`` (or find the owner's job
    with its idempotency key). A secret it references must be one of the
    owner's."""
    stdin = await check_spec(store, spec, settings, owner)
    now = time.time()
    run_at = spec.run_at
    if run_at is not None and not spec.allow_past and run_at.timestamp() < now - PAST_TOLERANCE:
        raise InvalidSpec(
            f"run_at: {run_at.isoformat()} is in the past "
            "(set allow_past to run such a job at once)",
            field="run_at",
        )
    new = NewJob(new_job_id(), spec, stdin, now, owner)
    job = await store.create_job(new)
    return Submitted(job, job.id == new.id)


async def submit(store: Store, spec: JobSpec, settings: Settings, owner: str = ANONYMOUS) -> Job:
    """Store a new job of ``owner`` for ``spec`` and return its record (state
    ``queued``, or ``scheduled`` until its run_at)."""
    return (await submit_job(store, spec, settings, owner)).job


async def check_spec(store: Store, spec: JobSpec, settings: Settings, owner: str) -> bytes:
    """Apply the server's policy to a spec ``owner`` submits (now or from a
    schedule); returns its stdin."""
    stdin = spec.stdin_bytes()
    if len(stdin) > settings.max_stdin_bytes:
        raise InvalidSpec(
            f"stdin: {len(stdin)} bytes is more than this server accepts "
            f"({settings.max_stdin_bytes} bytes)",
            field="stdin",
        )
    _check_container_policy(spec, settings)
    if spec.secrets:
        await _check_secrets(store, spec, owner)
    return stdin


def _check_container_policy(spec: JobSpec, settings: Settings) -> None:
    """An image job may name only the OCI runtimes and networks the server allows."""
    if (
        spec.container_runtime is not None
        and spec.container_runtime not in settings.container_runtimes
    ):
        allowed = ", ".join(settings.container_runtimes) or "none"
        raise InvalidSpec(
            f"container_runtime: {spec.container_runtime!r} is not allowed here (allowed: {allowed})",
            field="container_runtime",
        )
    if spec.network is not None and spec.network not in settings.container_networks:
        allowed = ", ".join(settings.container_networks) or "none"
        raise InvalidSpec(
            f"network: {spec.network!r} is not allowed here (allowed: {allowed})", field="network"
        )


async def _check_secrets(store: Store, spec: JobSpec, owner: str) -> None:
    names = [ref.name for ref in spec.secrets]
    found = await store.secret_names(owner, names)
    for index, name in enumerate(names):
        if name not in found:
            raise UnknownSecret(
                f"secrets.{index}.name: you have no secret named {name!r}",
                field=f"secrets.{index}.name",
            )
