"""The SQL of workflows: storing them, and moving them on (``advance``).

A workflow is rows in ``workflows`` and ``workflow_steps``; every step runs
as an ordinary job (labels WORKFLOW_LABEL, STEP_LABEL, PHASE_LABEL), so its
retries, timeout, lost workers and logs are the job's. ``advance`` reads
what the steps' jobs have done and takes the next moves, each one
conditional UPDATE of a step or of the workflow (``WHERE state = ?``):

- a step whose job ended becomes succeeded (with its output), failed or
  cancelled;
- a running workflow with a failed step starts reverting; one whose steps
  all succeeded has succeeded; otherwise the steps whose needs have all
  succeeded start, up to its concurrency;
- a reverting or cancelling workflow skips its pending steps, stops its
  running ones and waits for them, then reverts its succeeded steps one at a
  time, the latest to succeed first; a revert that fails stops it there.

Advancing is idempotent and may run anywhere at any time: after a step's
job ends (the worker that ran it), at submit and cancel (the API), and on
every worker's heartbeat, which recovers a crash between a job's end and its
workflow's move. Concurrent advances of one workflow take turns: each holds
the workflow's row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one
writer), and one that finds it held leaves it to the holder and the next sweep.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, insert, or_, select, update

from jobdock.errors import InvalidSpec, JobdockError, WorkflowFinished, WorkflowNotFound
from jobdock.models import (
    TERMINAL_STATES,
    JobSpec,
    JobState,
    StepState,
    WorkflowState,
    step_sources,
    timestamp,
)
from jobdock.store import jobs as ops
from jobdock.store.access import record
from jobdock.store.protocol import Advanced, NewJob, NewWorkflow
from jobdock.store.schema import jobs, log_chunks, workflow_steps, workflows
from jobdock.templates import BadReference
from jobdock.workflows import (
    PHASE_LABEL,
    STEP_LABEL,
    WORKFLOW_LABEL,
    Workflow,
    WorkflowPage,
    WorkflowStep,
    job_spec,
)

_ACTIVE = [WorkflowState.RUNNING, WorkflowState.REVERTING, WorkflowState.CANCELLING]
#: Rounds of one advance at most (each round moves something or ends it).
_MAX_ROUNDS = 1000
#: The most of a step's stdout read back for its output's last line.
_OUTPUT_BYTES = 64 * 1024

_job = jobs.alias("step_job")
_revert = jobs.alias("revert_job")


def _new_job_id() -> str:
    # As submit.new_job_id: 64 random bits.
    return secrets.token_hex(8)


# -- storing and reading --------------------------------------------------------------


def insert_workflow(conn: Connection, new: NewWorkflow) -> Advanced:
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
    return advance(conn, new.id, new.created_at)


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


def _workflow(row: Row[Any], steps: list[WorkflowStep]) -> Workflow:
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
        steps=steps,
    )


def get_workflow(conn: Connection, workflow_id: str) -> Workflow:
    row = conn.execute(select(workflows).where(workflows.c.id == workflow_id)).first()
    if row is None:
        raise WorkflowNotFound(workflow_id)
    steps = [_step(step) for step in conn.execute(_steps_query([workflow_id]))]
    return _workflow(row, steps)


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
    if rows:
        for step in conn.execute(_steps_query([row.id for row in rows])):
            steps.setdefault(step.workflow_id, []).append(_step(step))
    return WorkflowPage(
        workflows=[_workflow(row, steps.get(row.id, [])) for row in rows],
        next_cursor=next_cursor,
    )


def cancel_workflow(conn: Connection, workflow_id: str, now: float, actor: str | None) -> Advanced:
    """Move a running workflow to ``cancelling`` and on; one already
    stopping is left alone; a finished one raises WorkflowFinished."""
    moved = conn.execute(
        update(workflows)
        .where(workflows.c.id == workflow_id, workflows.c.state == WorkflowState.RUNNING.value)
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
    return advance(conn, workflow_id, now)


# -- moving on ------------------------------------------------------------------------


def advance_all(conn: Connection, now: float) -> tuple[int, Advanced]:
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
        done = advance(conn, workflow_id, now)
        total.started += done.started
        total.stopping += done.stopping
        total.held_elsewhere |= done.held_elsewhere
    return count, total


def _over(job: Any) -> Any:
    """The job has ended, or is gone (pruned)."""
    return or_(job.c.state.is_(None), job.c.state.in_([s.value for s in TERMINAL_STATES]))


def advance(conn: Connection, workflow_id: str, now: float) -> Advanced:
    """Move the workflow on as far as its steps' jobs allow (module docstring)."""
    result = Advanced()
    for _ in range(_MAX_ROUNDS):
        held = _hold(conn, workflow_id)
        if held is None:
            if result.rounds == 0:
                result.held_elsewhere = _is_active(conn, workflow_id)
            break
        result.rounds += 1
        steps = list(conn.execute(_steps_query([workflow_id])))
        if not _round(conn, held, steps, now, result):
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


def _round(
    conn: Connection, workflow: Row[Any], steps: list[Row[Any]], now: float, result: Advanced
) -> bool:
    """One move; False when there is none to make now."""
    if _sync(conn, workflow.id, steps):
        return True
    state = WorkflowState(workflow.state)
    if state is WorkflowState.RUNNING:
        for step in steps:
            if step.state in (StepState.FAILED, StepState.CANCELLED):
                how = "was cancelled" if step.state == StepState.CANCELLED else "failed"
                error = f"step {step.name!r} {how}" + (f": {step.error}" if step.error else "")
                return _move(conn, workflow.id, state, WorkflowState.REVERTING, now, error)
        if all(step.state == StepState.SUCCEEDED for step in steps):
            return _move(conn, workflow.id, state, WorkflowState.SUCCEEDED, now)
        return _start_ready(conn, workflow, steps, now, result)
    return _unwind(conn, workflow, steps, now, result)


def _set_step(
    conn: Connection, workflow_id: str, name: str, target: StepState, **values: Any
) -> bool:
    """One conditional move of a step from a state it may leave for ``target``."""
    sources = [s.value for s in step_sources(target)]
    return bool(
        conn.execute(
            update(workflow_steps)
            .where(
                workflow_steps.c.workflow_id == workflow_id,
                workflow_steps.c.name == name,
                workflow_steps.c.state.in_(sources),
            )
            .values(state=target.value, **values)
        ).rowcount
    )


def _move(
    conn: Connection,
    workflow_id: str,
    source: WorkflowState,
    target: WorkflowState,
    now: float,
    error: str | None = None,
) -> bool:
    values: dict[str, Any] = {"state": target.value, "advanced_at": now}
    if target.terminal:
        values["finished_at"] = now
    if error is not None:
        values["error"] = error
    return bool(
        conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id, workflows.c.state == source.value)
            .values(**values)
        ).rowcount
    )


def _sync(conn: Connection, workflow_id: str, steps: list[Row[Any]]) -> bool:
    """Record the steps whose job or revert has ended."""
    changed = False
    for step in steps:
        if step.state == StepState.RUNNING and _ended(step.job_state):
            changed |= _step_ended(conn, workflow_id, step, steps)
        elif step.state == StepState.REVERTING and _ended(step.revert_state):
            if step.revert_state == JobState.SUCCEEDED:
                changed |= _set_step(conn, workflow_id, step.name, StepState.REVERTED)
            else:
                why = step.revert_message or f"its job is {step.revert_state or 'gone'}"
                changed |= _set_step(
                    conn, workflow_id, step.name, StepState.REVERT_FAILED, error=why
                )
    return changed


def _ended(state: str | None) -> bool:
    """The job has ended (None: it is gone, pruned)."""
    return state is None or JobState(state).terminal


def _step_ended(conn: Connection, workflow_id: str, step: Row[Any], steps: list[Row[Any]]) -> bool:
    if step.job_state == JobState.SUCCEEDED:
        order = 1 + max((s.completed or 0 for s in steps), default=0)
        output = _output(conn, step.job_id, step.job_attempt)
        return _set_step(
            conn,
            workflow_id,
            step.name,
            StepState.SUCCEEDED,
            completed=order,
            output=None if output is None else json.dumps(output),
        )
    target = StepState.CANCELLED if step.job_state == JobState.CANCELLED else StepState.FAILED
    why = step.job_message or f"its job is {step.job_state or 'gone'}"
    return _set_step(conn, workflow_id, step.name, target, error=why)


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


def _start_ready(
    conn: Connection, workflow: Row[Any], steps: list[Row[Any]], now: float, result: Advanced
) -> bool:
    """Start the steps whose needs have all succeeded, up to the concurrency."""
    done = {s.name for s in steps if s.state == StepState.SUCCEEDED}
    room = workflow.concurrency - sum(1 for s in steps if s.state == StepState.RUNNING)
    outputs = {s.name: None if s.output is None else json.loads(s.output) for s in steps}
    started = False
    for step in steps:
        if room <= 0:
            break
        if step.state != StepState.PENDING or not set(json.loads(step.needs)) <= done:
            continue
        labels = {WORKFLOW_LABEL: workflow.id, STEP_LABEL: step.name, PHASE_LABEL: "execute"}
        try:
            spec = job_spec(json.loads(step.action), outputs, labels)
        except (InvalidSpec, BadReference) as exc:
            # Its job cannot be made (an output it uses is missing): the step fails.
            why = f"its job cannot be made: {exc}"
            return _set_step(conn, workflow.id, step.name, StepState.FAILED, error=why)
        job_id = _new_job_id()
        if _set_step(conn, workflow.id, step.name, StepState.RUNNING, job_id=job_id):
            _insert_job(conn, job_id, spec, now, workflow)
            result.started.append(job_id)
            started = True
            room -= 1
    return started


def _insert_job(
    conn: Connection, job_id: str, spec: JobSpec, now: float, workflow: Row[Any]
) -> None:
    if spec.name is None:
        spec = spec.model_copy(update={"name": f"{workflow.name}.{spec.labels[STEP_LABEL]}"})
    ops.insert_job(conn, NewJob(job_id, spec, spec.stdin_bytes(), now, workflow.owner))


def _unwind(
    conn: Connection, workflow: Row[Any], steps: list[Row[Any]], now: float, result: Advanced
) -> bool:
    """Stop, then revert: see the module docstring."""
    changed = False
    for step in steps:
        if step.state == StepState.PENDING:
            changed |= _set_step(conn, workflow.id, step.name, StepState.SKIPPED)
    running = [step for step in steps if step.state == StepState.RUNNING]
    for step in running:
        if not step.job_cancel_requested:
            try:
                if ops.cancel_job(conn, step.job_id, now):
                    result.stopping.append(step.job_id)
                changed = True
            except JobdockError:  # it ended meanwhile: the next round records it
                changed = True
    if running or changed or any(s.state == StepState.REVERTING for s in steps):
        return changed
    state = WorkflowState(workflow.state)
    for step in steps:
        if step.state == StepState.REVERT_FAILED:
            error = f"the revert of step {step.name!r} failed: {step.error}"
            return _move(conn, workflow.id, state, WorkflowState.REVERT_FAILED, now, error)
    to_revert = [s for s in steps if s.state == StepState.SUCCEEDED and s.revert is not None]
    if not to_revert:
        end = WorkflowState.CANCELLED if state is WorkflowState.CANCELLING else WorkflowState.FAILED
        return _move(conn, workflow.id, state, end, now)
    step = max(to_revert, key=lambda s: s.completed or 0)
    return _start_revert(conn, workflow, step, steps, now, result)


def _start_revert(
    conn: Connection,
    workflow: Row[Any],
    step: Row[Any],
    steps: list[Row[Any]],
    now: float,
    result: Advanced,
) -> bool:
    outputs = {s.name: None if s.output is None else json.loads(s.output) for s in steps}
    labels = {WORKFLOW_LABEL: workflow.id, STEP_LABEL: step.name, PHASE_LABEL: "revert"}
    try:
        spec = job_spec(json.loads(step.revert), outputs, labels)
    except (InvalidSpec, BadReference) as exc:
        why = f"its revert job cannot be made: {exc}"
        _set_step(conn, workflow.id, step.name, StepState.REVERTING)
        return _set_step(conn, workflow.id, step.name, StepState.REVERT_FAILED, error=why)
    job_id = _new_job_id()
    if not _set_step(conn, workflow.id, step.name, StepState.REVERTING, revert_job_id=job_id):
        return False
    if spec.name is None:
        spec = spec.model_copy(update={"name": f"{workflow.name}.{step.name}.revert"})
    _insert_job(conn, job_id, spec, now, workflow)
    result.started.append(job_id)
    return True
