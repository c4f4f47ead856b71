"""Planning a workflow's next moves: a pure function of its state.

The store holds the workflow's row, reads its state (a FlowState), calls the
planner and applies the moves it returns in one transaction, round after
round until there is none (store/workflows.py). One round makes the first
of these that applies:

- a step whose job ended becomes succeeded (with its output), failed or
  cancelled; a reverting step whose revert ended, reverted or revert_failed;
- a running workflow with a failed step starts reverting; one whose steps
  all succeeded has succeeded; otherwise the steps whose needs have all
  succeeded start, up to its concurrency, each as a new job
  (jobdock.submit.new_job, the server's policy applied);
- a reverting or cancelling workflow skips its pending steps, stops its
  running ones and waits for them, then reverts its succeeded steps one at a
  time, the latest to succeed first; a revert that fails stops it there;
- a reverting workflow whose reverts all ran, with retries left, runs again
  from its first steps (the store keeps the steps of the round that failed).

Imports the services it builds on (submit, workflows) and the store's
move records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobdock.errors import InvalidSpec
from jobdock.models import JobState, StepState, WorkflowState
from jobdock.models.records import NewJob
from jobdock.models.workflow_moves import (
    FlowState,
    Move,
    NextRound,
    StepMove,
    StepStatus,
    StopJob,
    WorkflowMove,
)
from jobdock.submit import Policy, new_job
from jobdock.templates import BadReference
from jobdock.workflows import PHASE_LABEL, ROUND_LABEL, STEP_LABEL, WORKFLOW_LABEL, job_spec


@dataclass(frozen=True, slots=True)
class WorkflowPlanner:
    """The planner the store calls (a models.workflow_moves.Planner): the
    moves of one round, with the steps' jobs made under ``policy``."""

    policy: Policy

    def __call__(self, flow: FlowState, now: float) -> Sequence[Move]:
        return plan_moves(flow, now, self.policy)


def plan_moves(flow: FlowState, now: float, policy: Policy) -> list[Move]:
    """The moves of one round (module docstring); empty: nothing to do now."""
    moves = _ended(flow.steps)
    if moves:
        return moves
    if flow.state is not WorkflowState.RUNNING:
        return _unwind(flow, now, policy)
    for step in flow.steps:
        if step.state in (StepState.FAILED, StepState.CANCELLED):
            how = "was cancelled" if step.state is StepState.CANCELLED else "failed"
            error = f"step {step.name!r} {how}" + (f": {step.error}" if step.error else "")
            return [WorkflowMove(flow.state, WorkflowState.REVERTING, error)]
    if all(step.state is StepState.SUCCEEDED for step in flow.steps):
        return [WorkflowMove(flow.state, WorkflowState.SUCCEEDED)]
    return _start_ready(flow, now, policy)


def _over(state: JobState | None) -> bool:
    """The job has ended (None: it is gone, pruned)."""
    return state is None or state.terminal


def _ended(steps: Sequence[StepStatus]) -> list[Move]:
    """Record the steps whose job or revert has ended."""
    order = 1 + max((s.completed or 0 for s in steps), default=0)
    moves: list[Move] = []
    for step in steps:
        if step.state is StepState.RUNNING and _over(step.job_state):
            moves.append(_job_ended(step, order))
        elif step.state is StepState.REVERTING and _over(step.revert_state):
            if step.revert_state is JobState.SUCCEEDED:
                moves.append(StepMove(step.name, StepState.REVERTED))
            else:
                why = step.revert_message or f"its job is {step.revert_state or 'gone'}"
                moves.append(StepMove(step.name, StepState.REVERT_FAILED, error=why))
    return moves


def _job_ended(step: StepStatus, order: int) -> StepMove:
    if step.job_state is JobState.SUCCEEDED:
        return StepMove(step.name, StepState.SUCCEEDED, completed=order, output=step.job_output)
    target = StepState.CANCELLED if step.job_state is JobState.CANCELLED else StepState.FAILED
    why = step.job_message or f"its job is {step.job_state or 'gone'}"
    return StepMove(step.name, target, error=why)


def _outputs(flow: FlowState) -> dict[str, Any]:
    return {step.name: step.output for step in flow.steps}


def _job(
    flow: FlowState,
    step: StepStatus,
    phase: str,
    now: float,
    policy: Policy,
) -> NewJob:
    """The job of a step's action (``execute``) or revert; raises
    InvalidSpec or BadReference when it cannot be made."""
    action = step.action if phase == "execute" else step.revert
    assert action is not None
    labels = {
        WORKFLOW_LABEL: flow.id,
        STEP_LABEL: step.name,
        PHASE_LABEL: phase,
        ROUND_LABEL: str(flow.round),
    }
    spec = job_spec(action, _outputs(flow), labels)
    if spec.name is None:
        suffix = "" if phase == "execute" else ".revert"
        spec = spec.model_copy(update={"name": f"{flow.name}.{step.name}{suffix}"})
    return new_job(spec, flow.owner, policy, now)


def _start_ready(flow: FlowState, now: float, policy: Policy) -> list[Move]:
    """Start the steps whose needs have all succeeded, up to the concurrency."""
    done = {s.name for s in flow.steps if s.state is StepState.SUCCEEDED}
    room = flow.concurrency - sum(1 for s in flow.steps if s.state is StepState.RUNNING)
    moves: list[Move] = []
    for step in flow.steps:
        if room <= 0:
            break
        if step.state is not StepState.PENDING or not set(step.needs) <= done:
            continue
        try:
            job = _job(flow, step, "execute", now, policy)
        except (InvalidSpec, BadReference) as exc:
            # Its job cannot be made (an output it uses is missing): the step fails.
            why = f"its job cannot be made: {exc}"
            return [*moves, StepMove(step.name, StepState.FAILED, error=why)]
        moves.append(StepMove(step.name, StepState.RUNNING, job=job))
        room -= 1
    return moves


def _unwind(flow: FlowState, now: float, policy: Policy) -> list[Move]:
    """Stop, then revert: see the module docstring."""
    moves: list[Move] = [
        StepMove(step.name, StepState.SKIPPED)
        for step in flow.steps
        if step.state is StepState.PENDING
    ]
    running = [step for step in flow.steps if step.state is StepState.RUNNING]
    moves += [StopJob(s.job_id) for s in running if s.job_id and not s.job_cancel_requested]
    if running or moves or any(s.state is StepState.REVERTING for s in flow.steps):
        return moves
    for step in flow.steps:
        if step.state is StepState.REVERT_FAILED:
            error = f"the revert of step {step.name!r} failed: {step.error}"
            return [WorkflowMove(flow.state, WorkflowState.REVERT_FAILED, error)]
    to_revert = [s for s in flow.steps if s.state is StepState.SUCCEEDED and s.revert is not None]
    if not to_revert:
        if flow.state is WorkflowState.REVERTING and flow.round <= flow.retries:
            return [NextRound(flow.round)]
        cancelling = flow.state is WorkflowState.CANCELLING
        end = WorkflowState.CANCELLED if cancelling else WorkflowState.FAILED
        return [WorkflowMove(flow.state, end)]
    step = max(to_revert, key=lambda s: s.completed or 0)
    try:
        job = _job(flow, step, "revert", now, policy)
    except (InvalidSpec, BadReference) as exc:
        why = f"its revert job cannot be made: {exc}"
        return [
            StepMove(step.name, StepState.REVERTING),
            StepMove(step.name, StepState.REVERT_FAILED, error=why),
        ]
    return [StepMove(step.name, StepState.REVERTING, job=job)]
