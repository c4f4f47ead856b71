"""``/v1/agent/...``: the routes of ``jobdock agent``, a worker that reaches
the server over HTTP(S) with an agent token instead of reaching its store
(docs/agents.md).

Each route is one call of the worker's side of the store (claim, wait for
work, heartbeat, an attempt's start, output, stdin, secrets and end), made
here on the server's own store, so the agent runs the one Worker over
them. Only agent tokens reach these routes, and they reach nothing else
(api/auth.py's ``agent_wall``). An agent acts only as workers whose id
begins with its token's (agent_access.py), and for an attempt only once
the store says that attempt was claimed by such a worker: any other is
answered ``fenced_off``, as a lost attempt is. Leases are the server's
clock and ``lease_seconds``, whatever the agent's clock says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.datastructures import State

from jobdock.agent_access import hand_back_attempts_of, worker_prefix
from jobdock.agent_wire import (
    CHUNKS_TYPE,
    claim_to_json,
    decode_chunks,
    outcome_of,
    reply_to_json,
    secrets_to_json,
    started_of,
    stdin_to_json,
)
from jobdock.api.auth import principal
from jobdock.api.context import planner_of, settings_of, store_of
from jobdock.api.errors import JSON_BODY, render_error, responses
from jobdock.errors import (
    FencedOff,
    Forbidden,
    InvalidRequest,
    JobdockError,
    JobNotFound,
    SecretsUnavailable,
    SpawnError,
)
from jobdock.housekeeping import workflow_step_ended
from jobdock.job_secrets import secret_values
from jobdock.models import JobState
from jobdock.models.records import Claim, Limits, WorkerInfo
from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.vault import Vault
from jobdock.workflows import WORKFLOW_LABEL

_log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/agent", tags=["agent"])

#: The longest a wait for work is held open.
MAX_WAIT_SECONDS = 30.0
#: The most jobs one claim takes.
MAX_CLAIM = 64
#: The most starts and ends one request reports.
MAX_REPORTS = 256
#: The attempts whose claim by an agent was checked, kept per server.
_CHECKED_MAX = 100_000

_Id = Annotated[str, Field(min_length=1, max_length=200)]
_Label = Annotated[str, Field(max_length=256)]
_JobId = Annotated[str, Path(max_length=64)]
_Number = Annotated[int, Path(ge=1, le=1_000_000_000)]
_ERRORS = (Forbidden, InvalidRequest, *JSON_BODY)
#: A job deleted under its attempt may answer not_found.
_ATTEMPT_ERRORS = (*_ERRORS, FencedOff, JobNotFound)


class AgentHello(BaseModel):
    """What an agent learns of the server before it starts."""

    worker_prefix: str = Field(description="How the agent's worker ids must begin.")
    lease_seconds: float
    heartbeat_seconds: float
    max_wait_seconds: float


class AgentWorker(BaseModel):
    """An agent's worker, as it registers."""

    id: _Id
    host: Annotated[str, Field(max_length=255)]
    labels: Annotated[dict[_Label, _Label], Field(max_length=256)]
    concurrency: Annotated[int, Field(ge=0, le=100_000)]


class ClaimRequest(BaseModel):
    """Jobs an agent's worker asks for."""

    worker_id: _Id
    limit: Annotated[int, Field(ge=1, le=MAX_CLAIM)]
    labels: Annotated[dict[_Label, _Label], Field(max_length=256)]


class ClaimReply(BaseModel):
    """The jobs claimed (each an attempt the agent now holds) and the
    generation of work to wait past next."""

    claims: list[dict[str, Any]]
    generation: int


class WaitRequest(BaseModel):
    """A long poll for work."""

    generation: Annotated[int, Field(ge=0)]
    seconds: Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)]


class WaitReply(BaseModel):
    """Whether work may have become claimable (false: the wait ran out)."""

    work: bool
    generation: int


class HeartbeatRequest(BaseModel):
    """The attempts an agent's worker runs (job id -> attempt number)."""

    worker_id: _Id
    running: Annotated[
        dict[Annotated[str, Field(max_length=64)], Annotated[int, Field(ge=0)]],
        Field(max_length=100_000),
    ]


class HeartbeatAnswer(BaseModel):
    """Which of them the worker no longer holds, and which to stop."""

    lost: list[str]
    cancel: list[str]
    kill: list[str]


class StartedBody(BaseModel):
    """Where an attempt's process runs."""

    pid: int | None = Field(None, ge=0, le=1 << 62)
    pid_start: int | None = Field(None, ge=0, le=1 << 62)
    host: Annotated[str, Field(max_length=255)]
    started_at: float


class OutcomeBody(BaseModel):
    """How an attempt ended (the fields of jobdock.models.outcome.Outcome)."""

    state: JobState
    reason: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=100_000)]
    finished_at: float
    exit_code: int | None = Field(None, ge=-(1 << 31), le=1 << 31)
    signal: int | None = Field(None, ge=0, le=1 << 16)
    stdout_bytes: int = Field(0, ge=0, le=1 << 62)
    stderr_bytes: int = Field(0, ge=0, le=1 << 62)
    next_attempt_at: float | None = None
    isolation: Annotated[str, Field(max_length=200)] | None = None
    limits: dict[str, Any] | None = None
    peak_memory: int | None = Field(None, ge=0, le=1 << 62)
    cpu_seconds: float | None = Field(None, ge=0)


class ReleaseBody(BaseModel):
    """Why an attempt is given back."""

    message: Annotated[str, Field(max_length=10_000)]


class WantedLabels(BaseModel):
    """Label keys a worker checks, and the labels it offers (label_checks)."""

    keys: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=64)]
    labels: Annotated[dict[str, Annotated[str, Field(max_length=1000)]], Field(max_length=64)]


class Wanted(BaseModel):
    """The keys some claimable queued job requires."""

    keys: list[str]


class EngineNote(BaseModel):
    """A cluster engine's job for an attempt, and what it says of it."""

    engine_job: Annotated[str, Field(min_length=1, max_length=64)]
    engine_state: Annotated[str, Field(max_length=255)]


class Uid(BaseModel):
    """The uid an owner's process jobs run as."""

    uid: int


class UidRequest(BaseModel):
    """Whose uid, and the attempt of theirs the agent holds."""

    owner: Annotated[str, Field(min_length=1, max_length=128)]
    job_id: Annotated[str, Field(max_length=64)]
    attempt: Annotated[int, Field(ge=1, le=1_000_000_000)]


class Stored(BaseModel):
    """A write was taken."""

    ok: bool = True


def _limits(settings: Settings) -> Limits:
    return Limits(
        settings.max_running,
        dict(settings.concurrency_limits),
        settings.max_running_per_owner,
        frozenset(settings.shared_concurrency_keys),
    )


def _own_worker(request: Request, worker_id: str) -> str:
    """``worker_id`` if the caller may act as it; else Forbidden."""
    prefix = worker_prefix(principal(request))
    if not worker_id.startswith(prefix):
        raise Forbidden(f"this agent's worker ids begin with {prefix!r}")
    return worker_id


def _checked(state: State) -> OrderedDict[tuple[str, str, int], str | None]:
    found: OrderedDict[tuple[str, str, int], str | None] | None = getattr(
        state, "agent_attempts", None
    )
    if found is None:
        found = state.agent_attempts = OrderedDict()
    return found


async def _held(request: Request, job_id: str, attempt: int) -> str | None:
    """Check that attempt ``attempt`` of ``job_id`` was claimed by one of the
    caller's workers (else FencedOff, whatever the reason: another's, or no
    such job); returns the job's workflow, if it is a step of one."""
    prefix = worker_prefix(principal(request))
    checked = _checked(request.app.state)
    key = (prefix, job_id, attempt)
    if key in checked:
        return checked[key]
    try:
        job = await store_of(request).get_job(job_id)
    except JobNotFound:
        raise FencedOff(job_id, attempt) from None
    mine = [a for a in job.attempts if a.number == attempt]
    if not mine or mine[0].worker is None or not mine[0].worker.startswith(prefix):
        raise FencedOff(job_id, attempt)
    workflow = job.spec.labels.get(WORKFLOW_LABEL)
    checked[key] = workflow
    _trim(checked)
    return workflow


def _trim(checked: OrderedDict[tuple[str, str, int], str | None]) -> None:
    while len(checked) > _CHECKED_MAX:
        checked.popitem(last=False)


async def _audit(request: Request, action: str, *attempts: tuple[str, int]) -> None:
    """Put what the agent did to ``attempts`` in the audit log: its actor is
    the agent token's name (``agent:NAME``), its target ``JOB.ATTEMPT``."""
    actor = f"agent:{principal(request).name}"
    targets = [f"{job_id}.{attempt}" for job_id, attempt in attempts]
    await store_of(request).record_audit(actor, action, targets)


def _forget(request: Request, job_id: str, attempt: int) -> None:
    _checked(request.app.state).pop((worker_prefix(principal(request)), job_id, attempt), None)


@router.post(
    "/hello", response_model=AgentHello, summary="Begin as an agent", responses=responses(*_ERRORS)
)
async def hello(request: Request) -> AgentHello:
    """How this agent's worker ids must begin, and the server's leases."""
    settings = settings_of(request)
    return AgentHello(
        worker_prefix=worker_prefix(principal(request)),
        lease_seconds=settings.lease_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        max_wait_seconds=MAX_WAIT_SECONDS,
    )


@router.post(
    "/workers",
    response_model=Stored,
    summary="Register an agent's worker",
    responses=responses(*_ERRORS),
)
async def register(request: Request, body: AgentWorker) -> Stored:
    """Record that the agent's worker started (``jobdock workers`` lists it)."""
    worker_id = _own_worker(request, body.id)
    info = WorkerInfo(worker_id, body.host, dict(body.labels), body.concurrency, time.time())
    await store_of(request).register_worker(info)
    _log.info("agent %s registered worker %s", principal(request).name, worker_id)
    return Stored()


class StoppedWorker(BaseModel):
    """An agent's worker that stopped."""

    worker_id: _Id


@router.post(
    "/workers/stopped",
    response_model=Stored,
    summary="Record that an agent's worker stopped",
    responses=responses(*_ERRORS),
)
async def unregister(request: Request, body: StoppedWorker) -> Stored:
    """Record that the agent's worker stopped."""
    await store_of(request).unregister_worker(_own_worker(request, body.worker_id), time.time())
    return Stored()


class HandedBack(BaseModel):
    """How many running attempts an interrupted agent's worker handed back."""

    handed_back: int


@router.post(
    "/workers/interrupted",
    response_model=HandedBack,
    summary="Hand back an interrupted agent's jobs",
    responses=responses(*_ERRORS),
)
async def interrupted(request: Request, body: StoppedWorker) -> HandedBack:
    """The agent's machine is being reclaimed (a spot notice): its worker's
    running attempts end at once as ``interrupted`` and their jobs are
    queued again, not counted against their retries; the worker is
    recorded stopped (docs/machines.md#interruptions)."""
    worker_id = _own_worker(request, body.worker_id)
    count = await hand_back_attempts_of(store_of(request), worker_id, time.time())
    await store_of(request).record_audit(
        f"agent:{principal(request).name}", "agent.interrupted", [worker_id]
    )
    _log.info("worker %s interrupted: %d job(s) handed back", worker_id, count)
    return HandedBack(handed_back=count)


@router.post(
    "/claim", response_model=ClaimReply, summary="Claim jobs", responses=responses(*_ERRORS)
)
async def claim(request: Request, body: ClaimRequest) -> ClaimReply:
    """Claim up to ``limit`` queued jobs this worker's labels and the
    server's concurrency limits allow, each as a new attempt under a lease.
    Answers at once; wait for more with ``/v1/agent/wait``."""
    worker_id = _own_worker(request, body.worker_id)
    store, settings = store_of(request), settings_of(request)
    generation = store.events.work_generation
    claims = await store.claim_jobs(
        worker_id,
        body.limit,
        time.time(),
        settings.lease_seconds,
        dict(body.labels),
        _limits(settings),
    )
    # These attempts are this agent's: its later writes need not read the job.
    checked, prefix = _checked(request.app.state), worker_prefix(principal(request))
    for held in claims:
        checked[(prefix, held.job_id, held.attempt)] = held.spec.labels.get(WORKFLOW_LABEL)
    _trim(checked)
    await _audit(request, "agent.claim", *((held.job_id, held.attempt) for held in claims))
    return ClaimReply(claims=[claim_to_json(c) for c in claims], generation=generation)


@router.post(
    "/wait", response_model=WaitReply, summary="Wait for work", responses=responses(*_ERRORS)
)
async def wait(request: Request, body: WaitRequest) -> WaitReply:
    """Return as soon as a job may have become claimable since the claim
    that answered ``generation`` (a submit, a retry or schedule coming due,
    a job given back), or after ``seconds``."""
    store = store_of(request)
    seconds = body.seconds
    due = await store.next_due()
    if due is not None:
        seconds = max(0.0, min(seconds, due - time.time()))
    try:
        now = await store.events.work_since(body.generation, seconds)
    except asyncio.CancelledError:
        # The server is shutting down (uvicorn cancels what outlives its
        # graceful shutdown): the agent is told to claim again, and will
        # find the server away or back, instead of a traceback here.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return WaitReply(work=True, generation=store.events.work_generation)
    return WaitReply(work=now != body.generation or seconds < body.seconds, generation=now)


@router.post(
    "/heartbeat",
    response_model=HeartbeatAnswer,
    summary="Renew an agent's leases",
    responses=responses(*_ERRORS),
)
async def heartbeat(request: Request, body: HeartbeatRequest) -> HeartbeatAnswer:
    """Renew the leases of the attempts the worker runs, for the server's
    ``lease_seconds``; answers which it no longer holds and which to stop."""
    worker_id = _own_worker(request, body.worker_id)
    now = time.time()
    reply = await store_of(request).heartbeat(
        worker_id, dict(body.running), now + settings_of(request).lease_seconds, now
    )
    return HeartbeatAnswer(**reply_to_json(reply))


@router.post(
    "/attempts/{job_id}/{attempt}/started",
    response_model=Stored,
    summary="Record an attempt's start",
    responses=responses(*_ATTEMPT_ERRORS),
)
async def started(request: Request, job_id: _JobId, attempt: _Number, body: StartedBody) -> Stored:
    """Record where the attempt's process runs (fenced)."""
    await _started(request, job_id, attempt, body)
    return Stored()


async def _started(request: Request, job_id: str, attempt: int, body: StartedBody) -> None:
    await _held(request, job_id, attempt)
    await store_of(request).mark_started(job_id, attempt, started_of(body.model_dump()))


class Report(BaseModel):
    """One attempt's start or end, among others sent together."""

    job_id: Annotated[str, Field(max_length=64)]
    attempt: Annotated[int, Field(ge=1, le=1_000_000_000)]
    started: StartedBody | None = None
    outcome: OutcomeBody | None = None


class Reports(BaseModel):
    """Starts and ends of an agent's attempts, stored together."""

    reports: Annotated[list[Report], Field(min_length=1, max_length=MAX_REPORTS)]


class ReportResults(BaseModel):
    """Per report, in order: null (stored) or the error it was refused with."""

    results: list[dict[str, Any] | None]


@router.post(
    "/reports",
    response_model=ReportResults,
    summary="Record the starts and ends of several attempts",
    responses=responses(*_ERRORS),
)
async def reports(request: Request, body: Reports) -> ReportResults:
    """Record each report as ``.../started`` or ``.../finish`` would (each
    fenced on its own), in one round trip: their writes share the store's
    commits. Each has exactly one of ``started`` and ``outcome``."""
    for report in body.reports:
        if (report.started is None) == (report.outcome is None):
            raise InvalidRequest("a report has exactly one of started and outcome")
    done = await asyncio.gather(
        *(_report(request, report) for report in body.reports), return_exceptions=True
    )
    results: list[dict[str, Any] | None] = []
    for outcome in done:
        if isinstance(outcome, JobdockError):
            results.append(render_error(outcome)[1]["error"])
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results.append(None)
    return ReportResults(results=results)


async def _report(request: Request, report: Report) -> None:
    if report.started is not None:
        await _started(request, report.job_id, report.attempt, report.started)
    elif report.outcome is not None:
        await _finish(request, report.job_id, report.attempt, report.outcome)


@router.post(
    "/attempts/{job_id}/{attempt}/logs",
    response_model=Stored,
    summary="Store an attempt's output",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {CHUNKS_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses=responses(*_ATTEMPT_ERRORS),
)
async def logs(
    request: Request,
    job_id: _JobId,
    attempt: _Number,
    resume: Annotated[bool, Query(description="A retry: skip the chunks already stored.")] = False,
) -> Stored:
    """Store output chunks (agent_wire.py's framing), in order (fenced). A
    ``resume`` after a request whose answer was lost stores only the
    chunks past those already stored, so none is lost or stored twice."""
    await _held(request, job_id, attempt)
    store = store_of(request)
    chunks = decode_chunks(await request.body())
    if resume and chunks:
        last = await store.read_logs_back(
            job_id, attempt=attempt, stream=None, before=1 << 62, limit=1
        )
        if last:
            chunks = [chunk for chunk in chunks if chunk.seq > last[0].seq]
    if chunks:
        await store.append_logs(job_id, attempt, chunks)
    return Stored()


@router.post(
    "/attempts/{job_id}/{attempt}/finish",
    response_model=Stored,
    summary="Record how an attempt ended",
    responses=responses(*_ATTEMPT_ERRORS),
)
async def finish(request: Request, job_id: _JobId, attempt: _Number, body: OutcomeBody) -> Stored:
    """Record the attempt's outcome and give its job its state (fenced);
    move on the workflow whose step it was."""
    await _finish(request, job_id, attempt, body)
    return Stored()


async def _finish(request: Request, job_id: str, attempt: int, body: OutcomeBody) -> None:
    workflow = await _held(request, job_id, attempt)
    outcome = outcome_of(body.model_dump(mode="json"))
    store = store_of(request)
    await store.finish_attempt(job_id, attempt, outcome)
    _forget(request, job_id, attempt)
    await _audit(request, "agent.finish", (job_id, attempt))
    if workflow is not None:
        job = await store.get_job(job_id)
        step = Claim(job_id, attempt, job.spec, b"", job.owner)
        await workflow_step_ended(store, planner_of(request.app.state), step, outcome)


@router.post(
    "/attempts/{job_id}/{attempt}/release",
    response_model=Stored,
    summary="Give an attempt back",
    responses=responses(*_ATTEMPT_ERRORS),
)
async def release(request: Request, job_id: _JobId, attempt: _Number, body: ReleaseBody) -> Stored:
    """Give the attempt back (the agent is stopping, or its engine is down):
    its job is queued again, not counted against ``max_lost`` (fenced)."""
    await _held(request, job_id, attempt)
    await store_of(request).release_attempt(job_id, attempt, body.message, time.time())
    _forget(request, job_id, attempt)
    await _audit(request, "agent.release", (job_id, attempt))
    return Stored()


@router.post(
    "/attempts/{job_id}/{attempt}/engine",
    response_model=Stored,
    summary="Say which engine job runs an attempt",
    responses=responses(*_ATTEMPT_ERRORS),
)
async def engine(request: Request, job_id: _JobId, attempt: _Number, body: EngineNote) -> Stored:
    """Record the cluster engine's job that runs the attempt (a Slurm job)
    and what the engine says of it, e.g. why it is pending (fenced)."""
    await _held(request, job_id, attempt)
    await store_of(request).note_engine(job_id, attempt, body.engine_job, body.engine_state)
    return Stored()


@router.post(
    "/wanted-labels",
    response_model=Wanted,
    summary="Which checked labels a queued job wants",
    responses=responses(*_ERRORS),
)
async def wanted_labels(request: Request, body: WantedLabels) -> Wanted:
    """Of ``keys``, those some queued job requires that a worker offering
    ``labels`` could claim now: the label checks the agent runs before it
    claims (label_checks)."""
    found = await store_of(request).wanted_labels(body.keys, body.labels, time.time())
    return Wanted(keys=sorted(found))


@router.get(
    "/attempts/{job_id}/{attempt}/stdin",
    summary="Read an attempt's streamed stdin",
    responses=responses(*_ATTEMPT_ERRORS),
)
async def stdin(
    request: Request,
    job_id: _JobId,
    attempt: _Number,
    after: Annotated[int, Query(ge=0, le=1 << 40)] = 0,
) -> dict[str, Any]:
    """Pieces of the job's streamed stdin after piece ``after``."""
    await _held(request, job_id, attempt)
    return stdin_to_json(await store_of(request).read_stdin(job_id, after))


@router.get(
    "/attempts/{job_id}/{attempt}/secrets",
    summary="Read the secrets of an attempt the agent holds",
    responses=responses(*_ATTEMPT_ERRORS, SecretsUnavailable),
)
async def secrets(request: Request, job_id: _JobId, attempt: _Number) -> dict[str, Any]:
    """The values of the secrets the job references, only while this attempt
    holds the job (running, not superseded)."""
    await _held(request, job_id, attempt)
    store: Store = store_of(request)
    job = await store.get_job(job_id)
    if job.attempt != attempt or job.state is not JobState.RUNNING:
        raise FencedOff(job_id, attempt)
    vault: Vault = request.app.state.vault
    held = Claim(job_id, attempt, job.spec, b"", job.owner)
    try:
        values = await secret_values(store, vault, held)
    except SpawnError as exc:
        raise SecretsUnavailable(exc.message) from None
    await _audit(request, "agent.secrets", (job_id, attempt))
    return secrets_to_json(values)


@router.post(
    "/uids",
    response_model=Uid,
    summary="The uid of an owner's process jobs",
    responses=responses(*_ATTEMPT_ERRORS),
)
async def uid(request: Request, body: UidRequest) -> Uid:
    """The uid the owner's process jobs run as (allocated by the server, so
    every worker agrees); only for the owner of an attempt the agent holds."""
    await _held(request, body.job_id, body.attempt)
    job = await store_of(request).get_job(body.job_id)
    if job.owner != body.owner:
        raise FencedOff(body.job_id, body.attempt)
    low, high = settings_of(request).job_uid_range
    return Uid(uid=await store_of(request).job_uid(body.owner, low, high))
