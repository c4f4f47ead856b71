"""The records layers exchange with the store: a job to create, a claim
and what its attempt reports (its start, heartbeats, log chunks), the
limits a claim respects, a schedule's turn, a workflow to create, and
the counts a metrics scrape reads.

Imports only its siblings (jobs, spec, states).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobdock.models.jobs import ANONYMOUS
from jobdock.models.spec import JobSpec
from jobdock.models.states import JobState, Stream


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job, ready to be stored."""

    id: str
    spec: JobSpec
    stdin: bytes
    created_at: float
    owner: str = ANONYMOUS
    #: The submit request's X-B3-TraceId, and the W3C traceparent that the
    #: job's attempts continue (docs/operating.md); None outside a request.
    trace_id: str | None = None
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker has claimed: it runs attempt ``attempt`` under a lease."""

    job_id: str
    attempt: int
    spec: JobSpec
    stdin: bytes
    owner: str = ANONYMOUS
    #: Failed attempts before this one that spent the retry budget.
    failures: int = 0
    #: The job's total deadline (epoch seconds), if it has one.
    finish_by: float | None = None
    #: The job's trace: see NewJob.
    trace_id: str | None = None
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class LogChunk:
    """Bytes of one stream, with their place in the stream and in both merged,
    and when they arrived (seconds since the epoch; None: not known)."""

    seq: int
    stream: Stream
    offset: int
    merged_offset: int
    data: bytes
    at: float | None = None

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class LogRead:
    """Chunks read from a job's log, and whether the attempt has ended.

    ``done`` is true when the attempt can write no more, so a follower that
    got no chunks past its offset may stop; ``terminal`` when the job, too,
    has ended (no later attempt will come).
    """

    attempt: int
    chunks: list[LogChunk]
    done: bool
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class StdinRead:
    """Pieces of a job's streamed stdin, in order: ``last`` is the number of
    the last one read (ask for those after it next); ``eof``, that the
    input was closed and every piece before the close has been read."""

    pieces: list[bytes]
    last: int
    eof: bool


@dataclass(frozen=True, slots=True)
class Limits:
    """Concurrency limits a claim respects (docs/scheduling.md): the most
    running jobs in the whole store, per concurrency key (a job's own
    ``concurrency_limit`` applies to a key not listed here; default 1), and
    per owner (None: unlimited).

    A key counts each owner's jobs apart (bob's jobs under ``deploy`` never
    hold back alice's), except the ``shared`` keys, which count everyone's
    together; ``per_key`` limits apply to each owner's count, or to the
    shared one."""

    max_running: int | None = None
    per_key: Mapping[str, int] = field(default_factory=dict)
    per_owner: int | None = None
    shared: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What one turn of a schedule does: move its next fire time from
    ``expected`` to ``next_fire_at`` (only if no other process did), and
    submit ``job`` for ``fire_at`` unless it is None (a missed, skipped fire).
    The schedule is ``owner``'s ``name``."""

    name: str
    expected: float
    next_fire_at: float | None
    fire_at: float | None
    job: NewJob | None
    owner: str = ANONYMOUS


@dataclass(frozen=True, slots=True)
class Started:
    """Where an attempt's process runs, recorded once it has started."""

    pid: int | None
    pid_start: int | None
    host: str
    started_at: float
    #: What the attempt really ran (AttemptInputs as JSON), where the runtime says.
    inputs: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """What a worker learns when it renews its leases."""

    lost: frozenset[str] = field(default_factory=frozenset)
    cancel: frozenset[str] = field(default_factory=frozenset)
    #: Of ``cancel``: those to kill at once, without their grace.
    kill: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class LostAttempt:
    """An attempt whose lease expired, resolved by the reaper."""

    job_id: str
    attempt: int
    host: str | None
    pid: int | None
    pid_start: int | None
    new_state: JobState


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker, as it registers itself."""

    id: str
    host: str
    labels: dict[str, str]
    concurrency: int
    started_at: float


@dataclass(frozen=True, slots=True)
class NewStep:
    """A step of a new workflow: its job and revert as checked at submit
    (job spec fields with the parameters in; outputs filled in at start)."""

    name: str
    needs: list[str]
    action: dict[str, Any]
    revert: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    """A validated workflow, ready to be stored."""

    id: str
    name: str
    params: dict[str, Any]
    concurrency: int
    steps: list[NewStep]
    created_at: float
    owner: str = ANONYMOUS
    retries: int = 0


@dataclass(slots=True)
class Advanced:
    """What moving a workflow on did to jobs: the ids of those it made and
    of the running ones it asked to stop."""

    started: list[str] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)
    #: Another transaction held the workflow (it was not moved on here).
    held_elsewhere: bool = False
    rounds: int = 0


#: Upper bounds (seconds) of the queue-wait and run-duration histograms.
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0)


@dataclass(frozen=True, slots=True)
class JobCount:
    """Jobs of one state, reason, runtime and label values: how many, and
    how many of them have started at least once."""

    state: str
    reason: str | None
    runtime: str
    labels: tuple[str, ...]
    jobs: int
    started: int


@dataclass(frozen=True, slots=True)
class Histogram:
    """Observations: how many were at most each of BUCKETS (cumulative),
    how many in all, and their sum."""

    buckets: tuple[int, ...]
    count: int
    sum: float


@dataclass(frozen=True, slots=True)
class StoreMetrics:
    """Everything the store tells a scrape."""

    #: Jobs in the store now.
    jobs: list[JobCount]
    #: Jobs deleted (retention, prune), from the tally: they count in the
    #: job counters, not in the gauge of jobs in the store.
    deleted: list[JobCount]
    #: Finished attempts by reason, deleted ones included (so are the
    #: retries and the histograms).
    attempts: dict[str, int]
    #: Attempts after a job's first: retries and runs after a lost worker.
    retries: int
    #: From submission to the first start, of jobs that started.
    queue_wait: Histogram
    #: From start to end of each finished attempt.
    run_duration: Histogram
    #: Finished attempts by exit status (:func:`exit_status`), deleted ones included.
    exits: dict[str, int] = field(default_factory=dict)
    #: Attempts that started, deleted ones included.
    starts: int = 0


def exit_status(exit_code: int | None, signal: int | None) -> str:
    """How an attempt ended, as Docker's ``die`` event says it: the exit
    code, 128 + the signal that ended it, or '' when it never ran."""
    if signal is not None:
        return str(128 + signal)
    return "" if exit_code is None else str(exit_code)
