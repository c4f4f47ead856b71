"""What jobdock records and shows of jobs, workers and schedules: Job and
its Attempts, the pages the API lists them in, and the answers of a run
and a prune.

Imports only its siblings (states, spec).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from jobdock.models.base import Model
from jobdock.models.spec import JobSpec, ScheduleSpec
from jobdock.models.states import JobState, Reason

#: The owner of jobs submitted when the server has no authentication.
ANONYMOUS = "anonymous"


class AttemptInputs(Model):
    """What an attempt really ran, recorded when it started: enough to run
    exactly it again (``jobdock repro``), never a secret or an env value."""

    image: str | None = Field(None, description="The image reference the spec gave.")
    image_digest: str | None = Field(
        None,
        description="The image that ran: its repo digest (NAME@sha256:...) where the engine "
        "knows one, else its image id (sha256:...).",
    )
    image_id: str | None = Field(None, description="The engine's id of the image that ran.")
    command: list[str] = Field(
        default_factory=list, description="The command that ran (the image's CMD if none given)."
    )
    entrypoint: list[str] | None = Field(None, description="The entrypoint that ran (images).")
    env: list[str] = Field(default_factory=list, description="The names of its env variables.")
    stdin_bytes: int | None = Field(None, description="Size of its stdin (null: streamed).")
    stdin_sha256: str | None = Field(None, description="sha256 of its stdin (null: streamed).")
    cwd: str | None = Field(None, description="Its working directory.")
    user: str | None = Field(None, description="The user it ran as.")
    limits: dict[str, Any] = Field(default_factory=dict, description="The limits it ran under.")
    isolation: str | None = Field(None, description="How it was confined.")
    runtime: str | None = Field(
        None, description="What ran it: 'process', or the container runtime (runc, runsc...)."
    )


class Attempt(Model):
    """One try at running a job, claimed by one worker under one fencing token."""

    number: int = Field(description="1 for the first attempt; also the attempt's fencing token.")
    worker: str | None = None
    pid: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: Reason | None = None
    message: str | None = None
    stdout_bytes: int = Field(0, description="Bytes of stdout; while it runs, stored so far.")
    stderr_bytes: int = Field(0, description="Bytes of stderr; while it runs, stored so far.")
    isolation: str | None = Field(
        None, description="How the attempt was confined, e.g. 'cgroup v1+namespaces', or 'none'."
    )
    container: str | None = Field(
        None, description="The name of the attempt's container (container jobs only)."
    )
    limits: dict[str, Any] | None = Field(None, description="The limits that applied.")
    peak_memory: int | None = Field(None, description="Peak memory use in bytes.")
    cpu_seconds: float | None = Field(None, description="CPU time used (user and system).")
    inputs: AttemptInputs | None = Field(
        None, description="What it really ran (recorded when it started; null before that)."
    )
    engine_job: str | None = Field(
        None, description="The cluster engine's job that runs the attempt (a Slurm job id)."
    )
    engine_state: str | None = Field(
        None, description="What the engine last said of that job, e.g. 'PENDING (Resources)'."
    )


def container_name(job_id: str, attempt: int) -> str:
    """The name of the container that an attempt of a container job runs in,
    as the engine lists it (``docker ps``)."""
    return f"jobdock-{job_id}-{attempt}"


def _or_empty_spec(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A record's spec, or an empty one where it does not load: a job or
    schedule stored before today's checks is shown (its message says why;
    see store/records.py), and a client can still read a list holding it."""
    try:
        return handler(value)
    except ValidationError:
        return JobSpec.model_construct()


class Job(Model):
    """The record of a job: its spec, where it is, and how it ended."""

    id: str
    name: str | None = None
    owner: str = Field(ANONYMOUS, description="The user who submitted the job.")
    state: JobState
    labels: dict[str, str] = Field(default_factory=dict)
    spec: JobSpec
    stdin_bytes: int = Field(0, description="Size of the input given on stdin.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: Reason | None = None
    message: str | None = None
    attempt: int = Field(0, description="The number of the latest attempt (0: never started).")
    cancel_requested: bool = False
    trace_id: str | None = Field(
        None, description="The X-B3-TraceId of the request that submitted it (docs/operating.md)."
    )
    next_attempt_at: datetime | None = Field(
        None, description="While retrying: when the next attempt may start."
    )
    attempts: list[Attempt] = Field(default_factory=list)
    waiting_reason: str | None = Field(
        None,
        description="While queued: why no worker can start it (no container engine, no "
        "live worker matching its requires); null when it waits only for its turn.",
    )

    @field_validator("spec", mode="wrap")
    @classmethod
    def _spec_as_far_as_it_loads(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _or_empty_spec(value, handler)

    @property
    def terminal(self) -> bool:
        return self.state.terminal


class JobPage(Model):
    """One page of a job listing, newest first."""

    jobs: list[Job]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` to get the next page; null on the last page."
    )


class WebhookDelivery(Model):
    """One try of one of a job's webhooks (docs/operating.md)."""

    url: str
    try_number: int = Field(description="1 for the first try of this URL.")
    at: datetime = Field(description="When the try began.")
    status: int | None = Field(None, description="The receiver's HTTP status; null: none.")
    ok: bool = Field(description="Whether the receiver took it (a 2xx answer).")
    error: str | None = Field(None, description="Why it failed, when it did.")
    seconds: float = Field(description="How long the try took.")


class WebhookDeliveries(Model):
    """A job's webhook delivery log, oldest try first."""

    deliveries: list[WebhookDelivery]


class WorkerRecord(Model):
    """A worker: where it runs, what it offers, and whether it is alive."""

    id: str
    host: str
    labels: dict[str, str]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None = None
    state: Literal["alive", "lost", "stopped"] = Field(
        description="lost: no heartbeat for longer than a lease; its jobs go to other workers."
    )
    running: list[str] = Field(
        default_factory=list,
        description="Ids of the jobs it runs; of your own jobs only, unless you are an admin.",
    )
    busy: int = Field(0, description="How many jobs it runs, everyone's.")


class WorkerList(Model):
    """The workers known to the store."""

    workers: list[WorkerRecord]


class Schedule(ScheduleSpec):
    """A schedule with what jobdock knows of its fire times."""

    owner: str = Field(ANONYMOUS, description="The user who added it; its jobs are theirs.")
    created_at: datetime
    next_fire_at: datetime | None = Field(None, description="The next fire time.")
    last_fire_at: datetime | None = Field(None, description="The latest fire time handled.")
    last_job_id: str | None = Field(None, description="The job of the latest fire time.")

    @field_validator("job", mode="wrap")
    @classmethod
    def _job_as_far_as_it_loads(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _or_empty_spec(value, handler)


class ScheduleList(Model):
    """The schedules, by name."""

    schedules: list[Schedule]


class PruneResult(Model):
    """What a prune deleted."""

    deleted: int = Field(description="Finished jobs deleted with their attempts and logs.")


class RunResult(Model):
    """The answer of a synchronous run: the finished job and its output."""

    job: Job
    stdout: str
    stderr: str
    truncated: bool = Field(False, description="True if output was cut at the size limit.")
