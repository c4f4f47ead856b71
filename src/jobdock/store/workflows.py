"""The SQL of workflows: storing them, and moving them on (``advance``).

A workflow is rows in ``workflows`` and ``workflow_steps``; every step runs
as an ordinary job (labels jobdock.workflows.WORKFLOW_LABEL, STEP_LABEL,
PHASE_LABEL), so its retries, timeout, lost workers and logs are the job's.
``advance`` holds the workflow's row, reads its state (a FlowState), asks
the planner it is given (jobdock.workflow_plan) for the next moves and
applies them, each one conditional UPDATE of a step or of the workflow
(``WHERE state = ?``), round after round until there is none. This module
decides nothing: what the moves are is the planner's.

Advancing is idempotent and may run anywhere at any time: after a step's
job ends (the worker that ran it), at submit and cancel (the API), and on
every worker's heartbeat, which recovers a crash between a job's end and its
workflow's move. Concurrent advances of one workflow take turns: each holds
the workflow's row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one
writer), and one that finds it held leaves it to the holder and the next sweep.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, or_, select, update

from jobdock.errors import JobdockError, WorkflowFinished, WorkflowNotFound
from jobdock.models import (
    TERMINAL_STATES,
    JobState,
    StepState,
    WorkflowState,
    step_sources,
    timestamp,
)
from jobdock.models.records import Advanced, NewWorkflow
from jobdock.models.workflow import Workflow, WorkflowPage, WorkflowRound, WorkflowStep
from jobdock.models.workflow_moves import (
    FlowState,
    Move,
    NextRound,
    Planner,
    StepMove,
    StepStatus,
    StopJob,
    WorkflowMove,
)
from jobdock.store import jobs as ops
from jobdock.store.access import record
from jobdock.store.schema import jobs, log_chunks, workflow_rounds, workflow_steps, workflows

_ACTIVE = [WorkflowState.RUNNING, WorkflowState.REVERTING, WorkflowState.CANCELLING]
#: Rounds of one advance at most (each round moves something or ends it).
_MAX_ROUNDS = 1000
#: The most of a step's stdout read back for its output's last line.
_OUTPUT_BYTES = 64 * 1024

_job = jobs.alias("step_job")
_revert = jobs.alias("revert_job")


# -- storing and reading --------------------------------------------------------------


def insert_workflow(conn: Connection, new: NewWorkflow, plan: Planner) -> Advanced:
    """Store a new workflow and start its first steps."""
    conn.execute(
        insert(workflows).values(
            id=new.id,
            name=new.name,
            owner=new.owner,
            state=WorkflowState.RUNNING.value,
            params=json.dumps(new.params),
            concurrency=new.concurrency,
            created_at=new.created_at,
            retries=new.retries,
            round=1,
        )
    )
    conn.execute(
        insert(workflow_steps),
        [
            {
                "workflow_id": new.id,
                "name": step.name,
                "position": position,
                "needs": json.dumps(step.needs),
                "action": json.dumps(step.action),
                "revert": None if step.revert is None else json.dumps(step.revert),
                "state": StepState.PENDING.value,
            }
            for position, step in enumerate(new.steps)
        ],
    )
    record(conn, new.created_at, new.owner, "workflow.submit", new.id)
    return advance(conn, new.id, new.created_at, plan)


def _steps_query(workflow_ids: Sequence[str]) -> Any:
    return (
        select(
            workflow_steps,
            _job.c.state.label("job_state"),
            _job.c.message.label("job_message"),
            _job.c.attempt.label("job_attempt"),
            _job.c.started_at.label("job_started_at"),
            _job.c.finished_at.label("job_finished_at"),
            _job.c.cancel_requested.label("job_cancel_requested"),
            _revert.c.state.label("revert_state"),
            _revert.c.message.label("revert_message"),
            _revert.c.attempt.label("revert_attempt"),
            _revert.c.cancel_requested.label("revert_cancel_requested"),
        )
        .outerjoin(_job, _job.c.id == workflow_steps.c.job_id)
        .outerjoin(_revert, _revert.c.id == workflow_steps.c.revert_job_id)
        .where(workflow_steps.c.workflow_id.in_(list(workflow_ids)))
        .order_by(workflow_steps.c.workflow_id, workflow_steps.c.position)
    )


def _step(row: Row[Any]) -> WorkflowStep:
    return WorkflowStep(
        name=row.name,
        needs=json.loads(row.needs),
        state=StepState(row.state),
        has_revert=row.revert is not None,
        job_id=row.job_id,
        job_state=JobState(row.job_state) if row.job_state else None,
        attempt=row.job_attempt or 0,
        started_at=timestamp(row.job_started_at),
        finished_at=timestamp(row.job_finished_at),
        revert_job_id=row.revert_job_id,
        revert_state=JobState(row.revert_state) if row.revert_state else None,
        revert_attempt=row.revert_attempt or 0,
        output=None if row.output is None else json.loads(row.output),
        error=row.error,
        completed=row.completed,
    )


def _rounds(conn: Connection, workflow_ids: Sequence[str]) -> dict[str, list[WorkflowRound]]:
    """The earlier rounds of the workflows, oldest first."""
    found: dict[str, list[WorkflowRound]] = {}
    rows = conn.execute(
        select(workflow_rounds)
        .where(workflow_rounds.c.workflow_id.in_(list(workflow_ids)))
        .order_by(workflow_rounds.c.workflow_id, workflow_rounds.c.number)
    )
    for row in rows:
        found.setdefault(row.workflow_id, []).append(
            WorkflowRound(
                number=row.number,
                error=row.error,
                ended_at=timestamp(row.ended_at),
                steps=[WorkflowStep.model_validate(step) for step in json.loads(row.steps)],
            )
        )
    return found


def _workflow(
    row: Row[Any], steps: list[WorkflowStep], rounds: list[WorkflowRound] | None = None
) -> Workflow:
    return Workflow(
        id=row.id,
        name=row.name,
        owner=row.owner,
        state=WorkflowState(row.state),
        params=json.loads(row.params),
        concurrency=row.concurrency,
        created_at=timestamp(row.created_at),
        finished_at=timestamp(row.finished_at),
        error=row.error,
        retries=row.retries,
        round=row.round,
        steps=steps,
        rounds=rounds or [],
    )


def get_workflow(conn: Connection, workflow_id: str) -> Workflow:
    row = conn.execute(select(workflows).where(workflows.c.id == workflow_id)).first()
    if row is None:
        raise WorkflowNotFound(workflow_id)
    steps = [_step(step) for step in conn.execute(_steps_query([workflow_id]))]
    return _workflow(row, steps, _rounds(conn, [workflow_id]).get(workflow_id))


def list_workflows(
    conn: Connection,
    states: tuple[WorkflowState, ...],
    owner: str | None,
    limit: int,
    cursor: str | None,
) -> WorkflowPage:
    query = select(workflows)
    if owner is not None:
        query = query.where(workflows.c.owner == owner)
    if states:
        query = query.where(workflows.c.state.in_([s.value for s in states]))
    if cursor:
        query = query.where(workflows.c.seq < int(cursor))
    rows = conn.execute(query.order_by(workflows.c.seq.desc()).limit(limit + 1)).all()
    next_cursor = str(rows[limit - 1].seq) if len(rows) > limit else None
    rows = rows[:limit]
    steps: dict[str, list[WorkflowStep]] = {}
    rounds: dict[str, list[WorkflowRound]] = {}
    if rows:
        ids = [row.id for row in rows]
        for step in conn.execute(_steps_query(ids)):
            steps.setdefault(step.workflow_id, []).append(_step(step))
        rounds = _rounds(conn, ids)
    return WorkflowPage(
        workflows=[_workflow(row, steps.get(row.id, []), rounds.get(row.id)) for row in rows],
        next_cursor=next_cursor,
    )


def cancel_workflow(
    conn: Connection, workflow_id: str, now: float, actor: str | None, plan: Planner
) -> Advanced:
    """Move a running workflow to ``cancelling`` and on, and a reverting one
    that would run again (retries left); one already stopping is left
    alone; a finished one raises WorkflowFinished."""
    would_retry = and_(
        workflows.c.state == WorkflowState.REVERTING.value, workflows.c.round <= workflows.c.retries
    )
    moved = conn.execute(
        update(workflows)
        .where(
            workflows.c.id == workflow_id,
            or_(workflows.c.state == WorkflowState.RUNNING.value, would_retry),
        )
        .values(
            state=WorkflowState.CANCELLING.value,
            error=f"cancelled by {actor}" if actor else "cancelled",
        )
    ).rowcount
    if not moved:
        state = conn.execute(
            select(workflows.c.state).where(workflows.c.id == workflow_id)
        ).scalar()
        if state is None:
            raise WorkflowNotFound(workflow_id)
        if WorkflowState(state).terminal:
            raise WorkflowFinished(workflow_id, state)
        return Advanced()
    if actor is not None:
        record(conn, now, actor, "workflow.cancel", workflow_id)
    return advance(conn, workflow_id, now, plan)


# -- moving on ------------------------------------------------------------------------


def advance_all(conn: Connection, now: float, plan: Planner) -> tuple[int, Advanced]:
    """Advance the workflows that a step's end has not moved on yet (its
    worker died first): those with a step whose job, or revert job, has
    ended. In id order, so that two sweeps take the rows in the same order."""
    step_over = and_(workflow_steps.c.state == StepState.RUNNING.value, _over(_job))
    revert_over = and_(workflow_steps.c.state == StepState.REVERTING.value, _over(_revert))
    ids = conn.execute(
        select(workflow_steps.c.workflow_id)
        .distinct()
        .outerjoin(_job, _job.c.id == workflow_steps.c.job_id)
        .outerjoin(_revert, _revert.c.id == workflow_steps.c.revert_job_id)
        .where(or_(step_over, revert_over))
        .order_by(workflow_steps.c.workflow_id)
    ).scalars()
    total = Advanced()
    count = 0
    for workflow_id in list(ids):
        count += 1
        done = advance(conn, workflow_id, now, plan)
        total.started += done.started
        total.stopping += done.stopping
        total.held_elsewhere |= done.held_elsewhere
    return count, total


def _over(job: Any) -> Any:
    """The job has ended, or is gone (pruned)."""
    return or_(job.c.state.is_(None), job.c.state.in_([s.value for s in TERMINAL_STATES]))


def advance(conn: Connection, workflow_id: str, now: float, plan: Planner) -> Advanced:
    """Move the workflow on as far as its steps' jobs allow: the moves
    ``plan`` makes of its state, round after round (module docstring)."""
    result = Advanced()
    for _ in range(_MAX_ROUNDS):
        held = _hold(conn, workflow_id)
        if held is None:
            if result.rounds == 0:
                result.held_elsewhere = _is_active(conn, workflow_id)
            break
        result.rounds += 1
        moves = plan(_flow_state(conn, held), now)
        if not _apply(conn, held.id, moves, now, result):
            break
    return result


def _hold(conn: Connection, workflow_id: str) -> Row[Any] | None:
    """The unfinished workflow's row, held until the transaction ends; None if
    it has finished or another transaction holds it."""
    return conn.execute(
        select(workflows)
        .where(workflows.c.id == workflow_id, workflows.c.state.in_([s.value for s in _ACTIVE]))
        .with_for_update(skip_locked=True)
    ).first()


def _is_active(conn: Connection, workflow_id: str) -> bool:
    state = conn.execute(select(workflows.c.state).where(workflows.c.id == workflow_id)).scalar()
    return state is not None and state in [s.value for s in _ACTIVE]


def _flow_state(conn: Connection, workflow: Row[Any]) -> FlowState:
    """The held workflow as its planner sees it."""
    steps = tuple(_step_status(conn, row) for row in conn.execute(_steps_query([workflow.id])))
    return FlowState(
        id=workflow.id,
        name=workflow.name,
        owner=workflow.owner,
        state=WorkflowState(workflow.state),
        concurrency=workflow.concurrency,
        steps=steps,
        round=workflow.round,
        retries=workflow.retries,
    )


def _step_status(conn: Connection, row: Row[Any]) -> StepStatus:
    job_state = JobState(row.job_state) if row.job_state else None
    succeeded = row.state == StepState.RUNNING and job_state is JobState.SUCCEEDED
    return StepStatus(
        name=row.name,
        needs=tuple(json.loads(row.needs)),
        state=StepState(row.state),
        action=json.loads(row.action),
        revert=None if row.revert is None else json.loads(row.revert),
        output=None if row.output is None else json.loads(row.output),
        error=row.error,
        completed=row.completed,
        job_id=row.job_id,
        job_state=job_state,
        job_message=row.job_message,
        job_cancel_requested=bool(row.job_cancel_requested),
        job_output=_output(conn, row.job_id, row.job_attempt) if succeeded else None,
        revert_state=JobState(row.revert_state) if row.revert_state else None,
        revert_message=row.revert_message,
    )


def _apply(
    conn: Connection, workflow_id: str, moves: Sequence[Move], now: float, result: Advanced
) -> bool:
    """Make the moves in order; False when none of them changed anything."""
    changed = False
    for move in moves:
        if isinstance(move, StepMove):
            changed |= _step_move(conn, workflow_id, move, result)
        elif isinstance(move, WorkflowMove):
            changed |= _move(conn, workflow_id, move, now)
        elif isinstance(move, NextRound):
            changed |= _next_round(conn, workflow_id, move, now)
        else:
            _stop(conn, move, now, result)
            changed = True  # it stopped, or it ended meanwhile: the next round records it
    return changed


def _step_move(conn: Connection, workflow_id: str, move: StepMove, result: Advanced) -> bool:
    """One conditional move of a step from a state it may leave for its target."""
    values: dict[str, Any] = {"state": move.target.value}
    if move.error is not None:
        values["error"] = move.error
    if move.target is StepState.SUCCEEDED:
        values["completed"] = move.completed
        values["output"] = None if move.output is None else json.dumps(move.output)
    if move.job is not None:
        values["revert_job_id" if move.target is StepState.REVERTING else "job_id"] = move.job.id
    sources = [s.value for s in step_sources(move.target)]
    moved = conn.execute(
        update(workflow_steps)
        .where(
            workflow_steps.c.workflow_id == workflow_id,
            workflow_steps.c.name == move.name,
            workflow_steps.c.state.in_(sources),
        )
        .values(**values)
    ).rowcount
    if moved and move.job is not None:
        ops.insert_job(conn, move.job)
        result.started.append(move.job.id)
    return bool(moved)


def _move(conn: Connection, workflow_id: str, move: WorkflowMove, now: float) -> bool:
    values: dict[str, Any] = {"state": move.target.value, "advanced_at": now}
    if move.target.terminal:
        values["finished_at"] = now
    if move.error is not None:
        values["error"] = move.error
    return bool(
        conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id, workflows.c.state == move.source.value)
            .values(**values)
        ).rowcount
    )


def _next_round(conn: Connection, workflow_id: str, move: NextRound, now: float) -> bool:
    """Record the steps of the round that failed and was reverted, and run
    the workflow again from its first steps."""
    error = conn.execute(select(workflows.c.error).where(workflows.c.id == workflow_id)).scalar()
    moved = conn.execute(
        update(workflows)
        .where(
            workflows.c.id == workflow_id,
            workflows.c.state == WorkflowState.REVERTING.value,
            workflows.c.round == move.round,
        )
        .values(
            state=WorkflowState.RUNNING.value, round=move.round + 1, error=None, advanced_at=now
        )
    ).rowcount
    if not moved:
        return False
    steps = [
        _step(row).model_dump(mode="json") for row in conn.execute(_steps_query([workflow_id]))
    ]
    conn.execute(
        insert(workflow_rounds).values(
            workflow_id=workflow_id,
            number=move.round,
            error=error,
            ended_at=now,
            steps=json.dumps(steps),
        )
    )
    conn.execute(
        update(workflow_steps)
        .where(workflow_steps.c.workflow_id == workflow_id)
        .values(
            state=StepState.PENDING.value,
            job_id=None,
            revert_job_id=None,
            output=None,
            completed=None,
            error=None,
        )
    )
    return True


def _stop(conn: Connection, move: StopJob, now: float, result: Advanced) -> None:
    try:
        if ops.cancel_job(conn, move.job_id, now):
            result.stopping.append(move.job_id)
    except JobdockError:  # it ended meanwhile: the next round records it
        pass


def _output(conn: Connection, job_id: str, attempt: int) -> Any:
    """The last line of the attempt's stdout as JSON; None if it is not JSON."""
    rows = conn.execute(
        select(log_chunks.c.data)
        .where(
            log_chunks.c.job_id == job_id,
            log_chunks.c.attempt == attempt,
            log_chunks.c.stream == 1,
        )
        .order_by(log_chunks.c.seq.desc())
    )
    tail = b""
    for (data,) in rows:
        tail = bytes(data) + tail
        if b"\n" in tail.rstrip(b"\n") or len(tail) >= _OUTPUT_BYTES:
            break
    last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
    try:
        return json.loads(last.decode())
    except ValueError:
        return None
