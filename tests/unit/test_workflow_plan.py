"""A workflow's next moves, planned from its state alone (no store)."""

from __future__ import annotations

from dataclasses import replace

from jobdock.models import JobState, StepState, WorkflowState
from jobdock.models.workflow_moves import (
    FlowState,
    NextRound,
    StepMove,
    StepStatus,
    StopJob,
    WorkflowMove,
)
from jobdock.settings import Settings
from jobdock.submit import Policy
from jobdock.workflow_plan import plan_moves
from jobdock.workflows import ROUND_LABEL, STEP_LABEL, WORKFLOW_LABEL

POLICY = Policy(Settings(max_stdin_bytes=1024))
NOW = 1_700_000_000.0


def step(
    name: str, *needs: str, state: StepState = StepState.PENDING, **fields: object
) -> StepStatus:
    action = {"command": ["run", name]}
    return StepStatus(name, needs, state, action, {"command": ["undo", name]}, **fields)  # type: ignore[arg-type]


def flow(
    *steps: StepStatus, state: WorkflowState = WorkflowState.RUNNING, concurrency: int = 4
) -> FlowState:
    return FlowState("wf1", "deploy", "alice", state, concurrency, steps)


def test_ready_steps_start_as_jobs_of_the_owner_up_to_the_concurrency() -> None:
    moves = plan_moves(
        flow(step("a"), step("b"), step("c"), step("d", "a"), concurrency=2), NOW, POLICY
    )

    assert [(m.name, m.target) for m in moves if isinstance(m, StepMove)] == [
        ("a", StepState.RUNNING),
        ("b", StepState.RUNNING),
    ]
    job = moves[0].job if isinstance(moves[0], StepMove) else None
    assert job is not None and job.owner == "alice" and job.created_at == NOW
    assert job.spec.name == "deploy.a"
    assert job.spec.labels[WORKFLOW_LABEL] == "wf1" and job.spec.labels[STEP_LABEL] == "a"


def test_a_step_whose_job_the_policy_refuses_fails() -> None:
    big = replace(step("a"), action={"command": ["cat"], "stdin": "x" * 2048})

    (move,) = plan_moves(flow(big), NOW, POLICY)

    assert isinstance(move, StepMove) and move.target is StepState.FAILED
    assert move.error is not None and move.error.startswith("its job cannot be made: stdin:")


def test_an_ended_job_is_recorded_before_anything_else() -> None:
    done = step(
        "a", state=StepState.RUNNING, job_id="j1", job_state=JobState.SUCCEEDED, job_output=7
    )

    assert plan_moves(flow(done, step("b", "a")), NOW, POLICY) == [
        StepMove("a", StepState.SUCCEEDED, completed=1, output=7)
    ]


def test_unwinding_stops_running_steps_then_reverts_the_latest_first() -> None:
    running = step("c", state=StepState.RUNNING, job_id="j3", job_state=JobState.RUNNING)
    first = step("a", state=StepState.SUCCEEDED, completed=1)
    second = step("b", state=StepState.SUCCEEDED, completed=2)
    cancelling = WorkflowState.CANCELLING

    assert plan_moves(flow(first, second, running, state=cancelling), NOW, POLICY) == [
        StopJob("j3")
    ]
    moves = plan_moves(flow(first, second, state=cancelling), NOW, POLICY)
    assert len(moves) == 1 and isinstance(moves[0], StepMove)
    assert (moves[0].name, moves[0].target) == ("b", StepState.REVERTING)
    assert moves[0].job is not None and moves[0].job.spec.name == "deploy.b.revert"
    assert plan_moves(flow(state=cancelling), NOW, POLICY) == [
        WorkflowMove(cancelling, WorkflowState.CANCELLED)
    ]


def test_a_reverted_round_with_retries_left_runs_again() -> None:
    reverted = (step("a", state=StepState.REVERTED), step("b", "a", state=StepState.FAILED))
    reverting = replace(flow(*reverted, state=WorkflowState.REVERTING), round=2, retries=2)
    spent = replace(reverting, round=3)
    cancelling = replace(reverting, state=WorkflowState.CANCELLING)

    assert plan_moves(reverting, NOW, POLICY) == [NextRound(2)]
    assert plan_moves(spent, NOW, POLICY) == [
        WorkflowMove(WorkflowState.REVERTING, WorkflowState.FAILED)
    ]
    assert plan_moves(cancelling, NOW, POLICY) == [
        WorkflowMove(WorkflowState.CANCELLING, WorkflowState.CANCELLED)
    ]


def test_a_steps_job_is_labelled_with_the_round() -> None:
    (move,) = plan_moves(replace(flow(step("a")), round=3, retries=5), NOW, POLICY)

    assert isinstance(move, StepMove) and move.job is not None
    assert move.job.spec.labels[ROUND_LABEL] == "3"
