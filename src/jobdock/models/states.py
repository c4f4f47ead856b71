"""The states of jobs, workflows and their steps, with their legal
transitions; why an attempt ended (Reason); a job's output streams.

Imports nothing of jobdock's.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life. Terminal states never change again."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset(
    {JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING, JobState.RETRYING}
)

#: The one definition of which state may follow which. The store's conditional
#: writes name their expected source states from this table.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # scheduled/queued/retrying -> failed: a deadline passed before it (re)started.
    JobState.SCHEDULED: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    # running -> queued: the attempt's worker was lost and the job is requeued.
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.QUEUED,
            JobState.RETRYING,
        }
    ),
    JobState.RETRYING: frozenset({JobState.QUEUED, JobState.CANCELLED, JobState.FAILED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def can_transition(source: JobState, target: JobState) -> bool:
    """Whether a job in ``source`` may move to ``target``."""
    return target in TRANSITIONS[source]


def sources_of(target: JobState) -> tuple[JobState, ...]:
    """The states from which a job may move to ``target``."""
    return tuple(s for s, targets in TRANSITIONS.items() if target in targets)


class Reason(StrEnum):
    """Why an attempt (and so a job) ended."""

    EXITED = "exited"
    SIGNALED = "signaled"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    SPAWN_ERROR = "spawn_error"
    WORKER_LOST = "worker_lost"
    #: Its machine was told it would be reclaimed (a spot notice) and handed
    #: it back: run again, not counted against the job's retries.
    INTERRUPTED = "interrupted"
    #: Killed for using more memory than its limit.
    OOM = "oom"
    #: Stopped for writing more output than its limit.
    OUTPUT_LIMIT = "output_limit"
    #: Its container image could not be found or pulled.
    IMAGE_NOT_FOUND = "image_not_found"
    #: Not started (or not finished) by its deadline.
    DEADLINE = "deadline"
    #: Its stored record no longer loads (it was written by an older
    #: jobdock, or by hand); it was not run.
    INVALID_RECORD = "invalid_record"


class Stream(StrEnum):
    """An output stream of a job."""

    STDOUT = "stdout"
    STDERR = "stderr"


STREAM_NUMBERS = {Stream.STDOUT: 1, Stream.STDERR: 2}
STREAMS_BY_NUMBER = {1: Stream.STDOUT, 2: Stream.STDERR}


class WorkflowState(StrEnum):
    """Where a workflow is. ``reverting`` and ``cancelling`` stop its running
    steps, then run the reverts of its completed steps, newest first."""

    RUNNING = "running"
    REVERTING = "reverting"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERT_FAILED = "revert_failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return not WORKFLOW_TRANSITIONS[self]


#: Legal moves of a workflow. ``revert_failed`` is final: it waits for a human.
#: A reverted round runs again (``reverting`` -> ``running``) while the
#: workflow has retries left; a cancel then stops it (-> ``cancelling``).
WORKFLOW_TRANSITIONS: dict[WorkflowState, frozenset[WorkflowState]] = {
    WorkflowState.RUNNING: frozenset(
        {WorkflowState.SUCCEEDED, WorkflowState.REVERTING, WorkflowState.CANCELLING}
    ),
    WorkflowState.REVERTING: frozenset(
        {
            WorkflowState.FAILED,
            WorkflowState.REVERT_FAILED,
            WorkflowState.RUNNING,
            WorkflowState.CANCELLING,
        }
    ),
    WorkflowState.CANCELLING: frozenset({WorkflowState.CANCELLED, WorkflowState.REVERT_FAILED}),
    WorkflowState.SUCCEEDED: frozenset(),
    WorkflowState.FAILED: frozenset(),
    WorkflowState.REVERT_FAILED: frozenset(),
    WorkflowState.CANCELLED: frozenset(),
}


class StepState(StrEnum):
    """Where one step of a workflow is: its job's progress, then its revert's."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Never started: the workflow stopped first.
    SKIPPED = "skipped"
    REVERTING = "reverting"
    REVERTED = "reverted"
    REVERT_FAILED = "revert_failed"


#: Legal moves of a step (pending -> failed: its job spec could not be made).
STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    StepState.PENDING: frozenset({StepState.RUNNING, StepState.SKIPPED, StepState.FAILED}),
    StepState.RUNNING: frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED}),
    StepState.SUCCEEDED: frozenset({StepState.REVERTING}),
    StepState.REVERTING: frozenset({StepState.REVERTED, StepState.REVERT_FAILED}),
    StepState.FAILED: frozenset(),
    StepState.CANCELLED: frozenset(),
    StepState.SKIPPED: frozenset(),
    StepState.REVERTED: frozenset(),
    StepState.REVERT_FAILED: frozenset(),
}


def workflow_sources(target: WorkflowState) -> tuple[WorkflowState, ...]:
    """The states from which a workflow may move to ``target``."""
    return tuple(s for s, targets in WORKFLOW_TRANSITIONS.items() if target in targets)


def step_sources(target: StepState) -> tuple[StepState, ...]:
    """The states from which a step may move to ``target``."""
    return tuple(s for s, targets in STEP_TRANSITIONS.items() if target in targets)
