"""How ``jobdock flow show`` draws a workflow: a rich Tree of its steps,
each under the step it needs (the first one, when it needs several), with
its state, attempt, duration and revert; and a document's steps before it
runs (``flow run --dry-run``). Imports the models, the workflow records and
jobdock.workflows (parameters put in); loads rich.tree, so commands import it when they draw."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from rich.text import Text
from rich.tree import Tree

from jobdock.models import StepState, WorkflowState
from jobdock.models.workflow import StepSpec, Workflow, WorkflowSpec, WorkflowStep
from jobdock.workflows import with_params


class _Step(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def needs(self) -> list[str]: ...


_S = TypeVar("_S", bound=_Step)

_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "reverting": "yellow",
    "cancelling": "yellow",
    "succeeded": "green",
    "reverted": "magenta",
    "failed": "red",
    "revert_failed": "bold red",
    "cancelled": "yellow",
    "skipped": "dim",
}


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    finish = end.timestamp() if end is not None else time.time()
    span = max(0.0, finish - start.timestamp())
    if span < 60:
        return f"{span:.1f}s"
    minutes, seconds = divmod(int(span), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _label(step: WorkflowStep) -> Text:
    text = Text()
    text.append(step.name, style="bold")
    text.append("  ")
    text.append(step.state.value, style=_STYLE.get(step.state.value, ""))
    if step.attempt:
        text.append(f"  attempt {step.attempt}")
    duration = _seconds(step.started_at, step.finished_at)
    if duration:
        text.append(f"  {duration}")
    if step.job_id:
        text.append(f"  job {step.job_id}", style="dim")
    if len(step.needs) > 1:
        text.append(f"  (needs {', '.join(step.needs)})", style="dim")
    if step.revert_job_id:
        state = step.revert_state.value if step.revert_state else "gone"
        text.append(f"\n↩ revert {state}", style=_STYLE.get(state, ""))
        text.append(f"  job {step.revert_job_id}", style="dim")
    if step.error and step.state in (
        StepState.FAILED,
        StepState.CANCELLED,
        StepState.REVERT_FAILED,
    ):
        text.append(f"\n{step.error}", style="red")
    return text


def tree(workflow: Workflow) -> Tree:
    """The workflow drawn as a tree."""
    head = Text()
    head.append(f"{workflow.name} ", style="bold")
    head.append(workflow.id, style="dim")
    head.append("  ")
    head.append(workflow.state.value, style=_STYLE.get(workflow.state.value, ""))
    duration = _seconds(workflow.created_at, workflow.finished_at)
    head.append(f"  {duration}")
    if workflow.retries:
        head.append(f"  round {workflow.round} of at most {workflow.retries + 1}")
    if workflow.error and workflow.state is not WorkflowState.SUCCEEDED:
        head.append(f"\n{workflow.error}", style="red")
    root = _placed(Tree(head), workflow.steps, _label)
    for earlier in workflow.rounds:
        text = Text(f"↻ round {earlier.number} failed, reverted", style="yellow")
        if earlier.error:
            text.append(f": {earlier.error}", style="red")
        _placed(root.add(text), earlier.steps, _label)
    return root


def _placed(root: Tree, steps: Sequence[_S], label: Callable[[_S], Text]) -> Tree:
    """``steps`` added to ``root``, each under the first step it needs."""
    nodes: dict[str, Tree] = {}
    # Declaration order is a topological order only if the author wrote it
    # so: place a step once its first need is placed.
    todo = list(steps)
    while todo:
        placed = False
        for step in list(todo):
            parent = root if not step.needs else nodes.get(step.needs[0])
            if parent is not None:
                nodes[step.name] = parent.add(label(step))
                todo.remove(step)
                placed = True
        if not placed:  # cannot happen for a checked workflow; show the rest flat
            for step in todo:
                nodes[step.name] = root.add(label(step))
            break
    return root


def _action(action: Mapping[str, Any]) -> str:
    """What a step's job or revert runs, in one line."""
    if "call" in action:
        return f"call {action['call']}"
    command = shlex.join(str(part) for part in action.get("command") or [])
    if action.get("image"):
        return f"image {action['image']}" + (f": {command}" if command else "")
    return command


def _planned(step: StepSpec, params: Mapping[str, Any]) -> Text:
    text = Text()
    text.append(step.name, style="bold")
    text.append(f"  {_action(with_params(step.job, params))}")
    if len(step.needs) > 1:
        text.append(f"  (needs {', '.join(step.needs)})", style="dim")
    if step.revert is not None:
        revert = _action(with_params(step.revert, params))
        text.append(f"\n↩ revert: {revert}", style="magenta")
    return text


def plan(spec: WorkflowSpec) -> Tree:
    """A document's steps drawn as a tree, as they would run (``flow run
    --dry-run``): what each runs, its revert, the steps it needs."""
    head = Text()
    head.append(f"{spec.name}", style="bold")
    head.append(f"  {len(spec.steps)} steps, at most {spec.concurrency} at once")
    if spec.retries:
        head.append(f", run again up to {spec.retries} times if a round fails")
    return _placed(Tree(head), spec.steps, lambda step: _planned(step, spec.params))


def _step_seen(step: WorkflowStep) -> tuple[object, ...]:
    return (step.state, step.attempt, step.job_id, step.revert_state, step.revert_job_id)


def _step_line(step: WorkflowStep) -> str:
    line = f"step {step.name}  {step.state.value}"
    if step.state in (StepState.REVERTING, StepState.REVERTED, StepState.REVERT_FAILED):
        if step.revert_job_id:
            state = step.revert_state.value if step.revert_state else "gone"
            line += f"  revert {state}  job {step.revert_job_id}"
    elif step.job_id:
        if step.attempt:
            line += f"  attempt {step.attempt}"
        line += f"  job {step.job_id}"
    if step.error and step.state in (
        StepState.FAILED,
        StepState.CANCELLED,
        StepState.REVERT_FAILED,
    ):
        line += f": {' '.join(step.error.split())}"
    return line


def changes(before: Workflow | None, after: Workflow) -> list[str]:
    """What changed from ``before`` (None: nothing shown yet) to ``after``, a
    line each (``flow show --watch`` off a terminal): the workflow's state,
    and each step's state, attempt, job and revert; steps still pending are
    not shown at first."""
    lines = []
    old = {step.name: _step_seen(step) for step in before.steps} if before else {}
    for step in after.steps:
        if before is None and step.state is StepState.PENDING:
            continue
        if old.get(step.name) != _step_seen(step):
            lines.append(_step_line(step))
    if before is None or (before.state, before.round) != (after.state, after.round):
        line = f"workflow {after.name} {after.id}  {after.state.value}"
        if after.retries:
            line += f"  round {after.round}"
        if after.error and after.state is not WorkflowState.SUCCEEDED:
            line += f": {' '.join(after.error.split())}"
        # At first the workflow, then its steps; later, the steps that moved it.
        lines.insert(0 if before is None else len(lines), line)
    stamp = time.strftime("%H:%M:%S")
    return [f"{stamp}  {line}" for line in lines]
