"""Submitting a job: validate the spec, apply the server's policy, store it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from jobdock.errors import InvalidJson, InvalidSpec
from jobdock.models import Job, JobSpec
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


def describe_error(error: Mapping[str, Any], skip: int = 0) -> tuple[str | None, str]:
    """The dotted field name and a one-line message of one pydantic error
    (``skip`` leading parts of its location are dropped)."""
    field = ".".join(str(part) for part in tuple(error.get("loc", ()))[skip:]) or None
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    elif error.get("type") == "missing":
        message = "field required"
    return field, f"{field}: {message}" if field else message


def invalid_spec(exc: ValidationError) -> InvalidSpec:
    """The InvalidSpec for pydantic's first complaint about a spec."""
    field, message = describe_error(exc.errors()[0])
    return InvalidSpec(message, field=field)


def apply_policy(
    spec: JobSpec, settings: Settings, missing: Callable[[JobSpec], str | None] | None = None
) -> JobSpec:
    """The spec with the server's default limits filled in; raises
    InvalidSpec for a limit above the server's maximum, for the host's
    network where it is not allowed, and (``unisolated: refuse``) for limits
    or isolation this server cannot enforce (``missing`` says what of a spec
    it cannot)."""
    given = spec.resources.model_dump(exclude_none=True)
    maxima = settings.max_resources.model_dump(exclude_none=True)
    # A limit the job does not set is the server's default, else its maximum.
    defaults = maxima | settings.default_resources.model_dump(exclude_none=True)
    resources = spec.resources.model_copy(update={**defaults, **given})
    for name, maximum in maxima.items():
        value = getattr(resources, name)
        if value > maximum:
            raise InvalidSpec(
                f"resources.{name}: {_number(value)} is more than this server allows "
                f"({_number(maximum)})",
                field=f"resources.{name}",
            )
    maximum = settings.max_output_limit
    output_limit = spec.output_limit or settings.default_output_limit or maximum
    if maximum is not None and output_limit is not None and output_limit > maximum:
        raise InvalidSpec(
            f"output_limit: {output_limit} is more than this server allows ({maximum})",
            field="output_limit",
        )
    isolation = spec.isolation
    host_network = not isinstance(isolation, bool | None) and isolation.network == "host"
    if host_network and not settings.allow_host_network:
        raise InvalidSpec(
            "isolation.network: this server does not allow the host's network",
            field="isolation.network",
        )
    if resources != spec.resources or output_limit != spec.output_limit:
        spec = spec.model_copy(update={"resources": resources, "output_limit": output_limit})
    problem = missing(spec) if missing is not None and settings.unisolated == "refuse" else None
    if problem is not None:
        field = "resources" if problem.startswith("resource") else "isolation"
        raise InvalidSpec(f"{field}: this server cannot enforce it: {problem}", field=field)
    return spec


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


async def submit(
    store: Store,
    spec: JobSpec,
    settings: Settings,
    *,
    missing: Callable[[JobSpec], str | None] | None = None,
) -> Job:
    """Store a new job for ``spec`` and return its record (state ``queued``);
    the server's policy applies first (see :func:`apply_policy`)."""
    spec = apply_policy(spec, settings, missing)
    stdin = spec.stdin_bytes()
    if len(stdin) > settings.max_stdin_bytes:
        raise InvalidSpec(
            f"stdin: {len(stdin)} bytes is more than this server accepts "
            f"({settings.max_stdin_bytes} bytes)",
            field="stdin",
        )
    return await store.create_job(NewJob(new_job_id(), spec, stdin, time.time()))
