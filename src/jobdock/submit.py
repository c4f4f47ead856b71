"""Creating a job: the server's policy (:class:`Policy`), the one id source
and the one function that makes a job (:func:`new_job`), which every
creator uses: a submit, a dispatch template, a schedule's fire, a
workflow's step or revert; and submitting jobs and workflows through it.
Imports the foundation, identities (who a job may run as), workflows (the
document's checks) and the store's protocol and records."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobdock import tracing
from jobdock.errors import InvalidSpec, UnknownSecret
from jobdock.identities import run_as_refusal
from jobdock.models import ANONYMOUS, Job, JobSpec, Resources
from jobdock.models.records import NewJob, NewStep, NewWorkflow
from jobdock.models.workflow import Workflow, WorkflowSpec
from jobdock.models.workflow_moves import Planner
from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.tracing import job_traceparent
from jobdock.webhooks import checked_webhooks
from jobdock.workflows import (
    action_spec,
    check_graph,
    check_references,
    located,
    placeholder_outputs,
    with_params,
)


def new_job_id() -> str:
    """A new job id: 16 hex digits (64 random bits)."""
    return secrets.token_hex(8)


#: Says what of a process job's spec this server cannot enforce (None:
#: nothing); the server's engines tell (jobdock.engines, Engines.missing).
Missing = Callable[[JobSpec], str | None]


@dataclass(frozen=True, slots=True)
class Policy:
    """The server's policy for the jobs it creates, built once per server:
    its settings, and what of a spec it cannot enforce."""

    settings: Settings
    missing: Missing | None = None

    def limits(self, spec: JobSpec) -> JobSpec:
        """The spec with the server's default limits filled in; raises
        InvalidSpec for a limit above the server's maximum, for the host's
        network where it is not allowed, and (``unisolated: refuse``) for
        limits or isolation this server cannot enforce."""
        settings = self.settings
        resources = _resources(spec, settings)
        maximum = settings.max_output_limit
        output_limit = spec.output_limit or settings.default_output_limit or maximum
        if maximum is not None and output_limit is not None and output_limit > maximum:
            raise InvalidSpec(
                f"output_limit: {output_limit} is more than this server allows ({maximum})",
                field="output_limit",
            )
        _check_grace_and_network(spec, settings)
        if resources != spec.resources or output_limit != spec.output_limit:
            spec = spec.model_copy(update={"resources": resources, "output_limit": output_limit})
        problem = None
        if self.missing is not None and settings.unisolated == "refuse":
            problem = self.missing(spec)
        if problem is not None:
            field = "resources" if problem.startswith("resource") else "isolation"
            raise InvalidSpec(f"{field}: this server cannot enforce it: {problem}", field=field)
        return spec

    def check(self, spec: JobSpec, owner: str) -> tuple[JobSpec, bytes]:
        """The spec as the policy leaves it for a job of ``owner`` (see
        :meth:`limits`), and its stdin; raises InvalidSpec also for stdin
        past the server's limit, an OCI runtime or network it does not
        allow, and an identity the owner's jobs may not run as."""
        settings = self.settings
        spec = self.limits(spec)
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
        return spec, stdin


def _resources(spec: JobSpec, settings: Settings) -> Resources:
    """The spec's resources with the server's defaults, within its maxima."""
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
    return resources


def _check_grace_and_network(spec: JobSpec, settings: Settings) -> None:
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


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def new_job(spec: JobSpec, owner: str, policy: Policy, now: float) -> NewJob:
    """The one way a job is made, wherever it comes from (a submit, a
    dispatch template, a schedule's fire, a workflow's step or revert): the
    record the store inserts, with a new id and the server's policy applied
    (see :meth:`Policy.check`; raises InvalidSpec). It does no I/O, so
    that a store transaction may call it (through a workflow's planner)."""
    spec, stdin = policy.check(spec, owner)
    spec = checked_webhooks(spec, policy.settings)
    trace_id, traceparent = job_traceparent()
    return NewJob(new_job_id(), spec, stdin, now, owner, trace_id, traceparent)


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
    store: Store, spec: JobSpec, policy: Policy, owner: str = ANONYMOUS
) -> Submitted:
    """Store a new job of ``owner`` for ``spec`` (or find the owner's job
    with its idempotency key). A secret it references must be one of the
    owner's; the server's policy applies first (see :class:`Policy`)."""
    now = time.time()
    # The submit span: the one a job's attempts continue (tracing.py).
    with tracing.span("submit", **{"jobdock.owner": owner}) as span:
        new = await _submittable(store, spec, policy, owner, now)
        job = await store.create_job(new)
        if span is not None:
            span.set_attribute("jobdock.job_id", job.id)
    return Submitted(job, job.id == new.id)


async def submit_jobs(
    store: Store, specs: Sequence[JobSpec], policy: Policy, owner: str = ANONYMOUS
) -> list[Submitted]:
    """Store new jobs of ``owner`` for ``specs``, in order, all or none:
    each is checked as :func:`submit_job` checks one, and the first that
    fails raises its InvalidSpec with the field named from the batch
    (``jobs.3.command``), before anything is stored."""
    now = time.time()
    with tracing.span("submit", **{"jobdock.owner": owner, "jobdock.jobs": len(specs)}):
        new = []
        for index, spec in enumerate(specs):
            try:
                new.append(await _submittable(store, spec, policy, owner, now))
            except InvalidSpec as exc:
                raise located(exc, f"jobs.{index}") from None
        created = await store.create_jobs(new)
    return [Submitted(job, job.id == made.id) for job, made in zip(created, new, strict=True)]


async def _submittable(
    store: Store, spec: JobSpec, policy: Policy, owner: str, now: float
) -> NewJob:
    """The job a submit of ``spec`` stores: checked, and not in the past."""
    new = await _checked_job(store, spec, policy, owner, now)
    run_at = new.spec.run_at
    if run_at is not None and not new.spec.allow_past and run_at.timestamp() < now - PAST_TOLERANCE:
        raise InvalidSpec(
            f"run_at: {run_at.isoformat()} is in the past "
            "(set allow_past to run such a job at once)",
            field="run_at",
        )
    return new


async def submit(store: Store, spec: JobSpec, policy: Policy, owner: str = ANONYMOUS) -> Job:
    """Store a new job of ``owner`` for ``spec`` and return its record (state
    ``queued``, or ``scheduled`` until its run_at)."""
    return (await submit_job(store, spec, policy, owner)).job


async def _checked_job(
    store: Store, spec: JobSpec, policy: Policy, owner: str, now: float
) -> NewJob:
    new = new_job(spec, owner, policy, now)
    if new.spec.secrets:
        await _check_secrets(store, new.spec, owner)
    return new


async def check_spec(store: Store, spec: JobSpec, policy: Policy, owner: str) -> JobSpec:
    """The spec as the server's policy leaves it for a job ``owner`` submits
    (now, from a schedule or a template), its secrets checked to be theirs;
    nothing is stored."""
    return (await _checked_job(store, spec, policy, owner, time.time())).spec


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


async def check_workflow(
    store: Store, spec: WorkflowSpec, policy: Policy, owner: str
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
            if given is not None:
                actions[part] = await _checked_action(
                    store,
                    with_params(given, spec.params),
                    outputs,
                    policy,
                    owner,
                    f"steps.{i}.{part}",
                )
        steps.append(NewStep(step.name, list(step.needs), actions["job"] or {}, actions["revert"]))
    return steps


async def _checked_action(
    store: Store,
    action: dict[str, Any],
    outputs: dict[str, Any],
    policy: Policy,
    owner: str,
    where: str,
) -> dict[str, Any]:
    """A step's job or revert (at ``where``) with what the policy fills in."""
    spec = action_spec(action, outputs, where)
    try:
        job = await check_spec(store, spec, policy, owner)
    except InvalidSpec as exc:
        raise located(exc, where) from None
    # What the policy filled in; outputs never go in these fields.
    action["resources"] = job.resources.model_dump(mode="json", exclude_none=True)
    if job.output_limit is not None:
        action["output_limit"] = job.output_limit
    return action


async def submit_workflow(
    store: Store,
    spec: WorkflowSpec,
    policy: Policy,
    owner: str = ANONYMOUS,
    *,
    plan: Planner,
) -> Workflow:
    """Check and store a workflow of ``owner``; its first steps' jobs start
    at once, as ``plan`` (see jobdock.workflow_plan) makes them."""
    steps = await check_workflow(store, spec, policy, owner)
    new = NewWorkflow(
        id=new_job_id(),
        name=spec.name,
        params=spec.params,
        concurrency=spec.concurrency,
        retries=spec.retries,
        steps=steps,
        created_at=time.time(),
        owner=owner,
    )
    return await store.create_workflow(new, plan)
