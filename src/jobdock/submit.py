"""Submitting a job: validate the spec, apply the server's policy, store it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobdock.errors import InvalidSpec, UnknownSecret
from jobdock.identities import run_as_refusal
from jobdock.models import ANONYMOUS, Job, JobSpec
from jobdock.settings import Settings
from jobdock.store.protocol import NewJob, NewStep, NewWorkflow, Store
from jobdock.workflows import (
    Workflow,
    WorkflowSpec,
    check_graph,
    check_references,
    job_spec,
    placeholder_outputs,
    with_params,
)

# isort: split
# re-exported for the issue-16 merge
from jobdock.models.parsing import describe_error as describe_error
from jobdock.models.parsing import invalid_spec as invalid_spec
from jobdock.models.parsing import parse_spec as parse_spec


def new_job_id() -> str:
    """A new job id: 16 hex digits (64 random bits)."""
    return secrets.token_hex(8)


#: Says what of a process job's spec the server's worker cannot enforce
#: (None: nothing); see Worker.missing.
Missing = Callable[[JobSpec], str | None]


def apply_policy(spec: JobSpec, settings: Settings, missing: Missing | None = None) -> JobSpec:
    """The spec with the server's default limits filled in; raises
    InvalidSpec for a limit above the server's maximum, for the host's
    network where it is not allowed, and (``unisolated: refuse``) for limits
    or isolation this server cannot enforce (``missing`` says what of a spec
    it cannot)."""
    given = spec.resources.model_dump(exclude_none=True)
    maxima = settings.max_resources.model_dump(exclude_none=True)
    # A limit the job does not set is the server's default, else its maximum.
    defaults = maxima | settings.default_resources.model_dump(exclude_none=True)
    if spec.image is not None:
        # The engine limits an image job's cpus, memory and pids, not its io.
        defaults = {name: value for name, value in defaults.items() if not name.startswith("io_")}
    resources = spec.resources.model_copy(update={**defaults, **given})
    for name, maximum in maxima.items():
        value = getattr(resources, name)
        if value is not None and value > maximum:
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
    if spec.kill_grace > settings.max_kill_grace:
        raise InvalidSpec(
            f"kill_grace: {_number(spec.kill_grace)} seconds is more than this server allows "
            f"({_number(settings.max_kill_grace)} seconds)",
            field="kill_grace",
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
    store: Store,
    spec: JobSpec,
    settings: Settings,
    owner: str = ANONYMOUS,
    *,
    missing: Missing | None = None,
) -> Submitted:
    """Store a new job of ``owner`` for ``spec`` (or find the owner's job
    with its idempotency key). A secret it references must be one of the
    owner's; the server's policy applies first (see :func:`apply_policy`)."""
    spec, stdin = await check_spec(store, spec, settings, owner, missing=missing)
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


async def submit(
    store: Store,
    spec: JobSpec,
    settings: Settings,
    owner: str = ANONYMOUS,
    *,
    missing: Missing | None = None,
) -> Job:
    """Store a new job of ``owner`` for ``spec`` and return its record (state
    ``queued``, or ``scheduled`` until its run_at)."""
    return (await submit_job(store, spec, settings, owner, missing=missing)).job


async def check_spec(
    store: Store, spec: JobSpec, settings: Settings, owner: str, *, missing: Missing | None = None
) -> tuple[JobSpec, bytes]:
    """Apply the server's policy to a spec ``owner`` submits (now or from a
    schedule); returns the spec as the policy leaves it, and its stdin."""
    spec = apply_policy(spec, settings, missing)
    stdin = spec.stdin_bytes()
    if len(stdin) > settings.max_stdin_bytes:
        raise InvalidSpec(
            f"stdin: {len(stdin)} bytes is more than this server accepts "
            f"({settings.max_stdin_bytes} bytes)",
            field="stdin",
        )
    _check_container_policy(spec, settings)
    refused = run_as_refusal(spec, settings, owner)
    if refused is not None:
        raise InvalidSpec(refused[1], field=refused[0])
    if spec.secrets:
        await _check_secrets(store, spec, owner)
    return spec, stdin


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


# -- workflows (docs/workflows.md) ----------------------------------------------------


def _within(exc: InvalidSpec, prefix: str) -> InvalidSpec:
    """The error of a step's job spec, with its field named from the document's root."""
    field = f"{prefix}.{exc.field}" if exc.field else prefix
    message = exc.message.removeprefix(f"{exc.field}: ") if exc.field else exc.message
    return type(exc)(f"{field}: {message}", field=field)


async def check_workflow(
    store: Store,
    spec: WorkflowSpec,
    settings: Settings,
    owner: str,
    *,
    missing: Missing | None = None,
) -> list[NewStep]:
    """Check a workflow document as ``owner`` submits it: its graph, its
    references, and every step's job and revert as a job of theirs would be
    (the server's policy, their secrets). Returns the steps to store, with
    the parameters in. Raises InvalidSpec naming the field."""
    check_graph(spec)
    check_references(spec)
    outputs = placeholder_outputs(spec)
    steps = []
    for i, step in enumerate(spec.steps):
        actions: dict[str, dict[str, Any] | None] = {"job": step.job, "revert": step.revert}
        for part, given in actions.items():
            if given is None:
                continue
            action = with_params(given, spec.params)
            where = f"steps.{i}.{part}"
            if "idempotency_key" in action:
                raise InvalidSpec(
                    f"{where}.idempotency_key: a step's job cannot have one",
                    field=f"{where}.idempotency_key",
                )
            try:
                job, _ = await check_spec(
                    store, job_spec(action, outputs), settings, owner, missing=missing
                )
            except InvalidSpec as exc:
                raise _within(exc, where) from None
            # What the policy filled in; outputs never go in these fields.
            action["resources"] = job.resources.model_dump(mode="json", exclude_none=True)
            if job.output_limit is not None:
                action["output_limit"] = job.output_limit
            actions[part] = action
        steps.append(NewStep(step.name, list(step.needs), actions["job"] or {}, actions["revert"]))
    return steps


async def submit_workflow(
    store: Store,
    spec: WorkflowSpec,
    settings: Settings,
    owner: str = ANONYMOUS,
    *,
    missing: Missing | None = None,
) -> Workflow:
    """Check and store a workflow of ``owner``; its first steps' jobs start at once."""
    steps = await check_workflow(store, spec, settings, owner, missing=missing)
    new = NewWorkflow(
        id=new_job_id(),
        name=spec.name,
        params=spec.params,
        concurrency=spec.concurrency,
        steps=steps,
        created_at=time.time(),
        owner=owner,
    )
    return await store.create_workflow(new)
