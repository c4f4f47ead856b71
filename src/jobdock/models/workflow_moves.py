"""A workflow as its planner sees it, and the moves the planner hands back.

The store reads a :class:`FlowState` inside its transaction, calls the
planner (jobdock.workflow_plan, a pure function of the state) and applies
the moves in order, each one conditional write (store/workflows.py). These
are plain records, like FirePlan: they import only the rest of the models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobdock.models.records import NewJob
from jobdock.models.states import JobState, StepState, WorkflowState


@dataclass(frozen=True, slots=True)
class StepStatus:
    """A step and the jobs that run it and its revert, as they stand."""

    name: str
    needs: tuple[str, ...]
    state: StepState
    #: The step's job and revert as checked at submit (parameters in).
    action: dict[str, Any]
    revert: dict[str, Any] | None
    output: Any = None
    error: str | None = None
    completed: int | None = None
    job_id: str | None = None
    #: None: no job yet, or its job is gone (pruned).
    job_state: JobState | None = None
    job_message: str | None = None
    job_cancel_requested: bool = False
    #: The last line of its job's stdout as JSON, once its job succeeded.
    job_output: Any = None
    revert_state: JobState | None = None
    revert_message: str | None = None


@dataclass(frozen=True, slots=True)
class FlowState:
    """An unfinished workflow and its steps (in their order), held by the
    transaction that moves it on."""

    id: str
    name: str
    owner: str
    state: WorkflowState
    concurrency: int
    steps: tuple[StepStatus, ...]
    #: The round it is in (1 first) and how many times a failed one may run again.
    round: int = 1
    retries: int = 0


@dataclass(frozen=True, slots=True)
class StepMove:
    """Move step ``name`` to ``target`` (from a state it may leave for it),
    recording ``error`` (if not None), and for ``succeeded`` its ``output``
    and the order it ``completed`` in. ``job``: the job that runs the step
    (moving to ``running``) or its revert (to ``reverting``), inserted only
    if the step moved."""

    name: str
    target: StepState
    error: str | None = None
    completed: int | None = None
    output: Any = None
    job: NewJob | None = None


@dataclass(frozen=True, slots=True)
class WorkflowMove:
    """Move the workflow from ``source`` to ``target``, recording ``error``."""

    source: WorkflowState
    target: WorkflowState
    error: str | None = None


@dataclass(frozen=True, slots=True)
class NextRound:
    """Round ``round`` failed and was reverted: record its steps and run the
    workflow again from its first steps (``reverting`` -> ``running``)."""

    round: int


@dataclass(frozen=True, slots=True)
class StopJob:
    """Ask a running step's job to stop."""

    job_id: str


Move = StepMove | WorkflowMove | StopJob | NextRound
#: The planner: the moves to make now of a workflow's state at a time
#: (none: nothing to do until a job ends).
Planner = Callable[[FlowState, float], Sequence[Move]]
