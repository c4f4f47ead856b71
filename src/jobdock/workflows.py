"""Workflows: named steps, each run as an ordinary job, with dependencies
(``needs``), parameters, outputs passed on, and reverts (docs/workflows.md).

This module holds the checks of the document a user submits (the document
itself, :class:`~jobdock.models.WorkflowSpec`, and the records the API
answers with live in jobdock.models), and how a step's job spec is made
when the step starts. jobdock.workflow_plan decides a workflow's moves and
the store applies them (store/workflows.py). This module imports only the
foundation (errors, models) and the support leaves documents and templates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from jobdock.documents import load_json, load_yaml
from jobdock.errors import InvalidSpec
from jobdock.models import JobSpec, invalid_spec
from jobdock.models.workflow import WorkflowSpec, document
from jobdock.templates import BadReference, Reference, output_value, references, render

#: Labels of every job a workflow makes: its workflow's id, its step's name,
#: whether it is the step's revert, and the workflow's round (1 first).
WORKFLOW_LABEL = "jobdock.io/workflow"
STEP_LABEL = "jobdock.io/step"
PHASE_LABEL = "jobdock.io/phase"
ROUND_LABEL = "jobdock.io/round"
#: The program a ``call`` step's job runs; the worker runs it as its own
#: Python interpreter with ``-m jobdock.call``.
CALL_PROGRAM = "jobdock.call"
#: Where a step's output may be used: the fields that cannot raise what a
#: job may do (its limits, its isolation), so the submit's checks hold.
OUTPUT_FIELDS = ("command", "entrypoint", "env", "stdin", "args")

_CALL = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*")


def load_document(body: bytes | str, *, yaml: bool = False) -> WorkflowSpec:
    """A workflow document from JSON (or YAML); raises InvalidJson (also for
    a document past the bounds of jobdock.documents), or InvalidSpec naming
    the first bad field."""
    return document(load_yaml(body) if yaml else load_json(body))


# -- checks at submit -----------------------------------------------------------------


def _invalid(message: str, field: str) -> InvalidSpec:
    return InvalidSpec(f"{field}: {message}", field=field)


def check_graph(spec: WorkflowSpec) -> None:
    """Raise InvalidSpec for a duplicate step name, a need that names no
    step, or a cycle of needs (naming the steps on it)."""
    index: dict[str, int] = {}
    for i, step in enumerate(spec.steps):
        if step.name in index:
            raise _invalid(f"a step named {step.name!r} comes twice", f"steps.{i}.name")
        index[step.name] = i
    for i, step in enumerate(spec.steps):
        for j, need in enumerate(step.needs):
            if need not in index:
                raise _invalid(f"no step is named {need!r}", f"steps.{i}.needs.{j}")
            if need == step.name:
                raise _invalid("a step cannot need itself", f"steps.{i}.needs.{j}")
    cycle = _find_cycle({step.name: step.needs for step in spec.steps})
    if cycle is not None:
        raise _invalid(
            f"the needs form a cycle: {' -> '.join(cycle)}", f"steps.{index[cycle[0]]}.needs"
        )


def _find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle in the graph as the names on it (the first one again at the end)."""
    done: set[str] = set()
    for start in needs:
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, child = stack.pop()
            if child == 0:
                path.append(node)
                on_path.add(node)
            edges = needs.get(node, ())
            if child < len(edges):
                stack.append((node, child + 1))
                nxt = edges[child]
                if nxt in on_path:
                    return [*path[path.index(nxt) :], nxt]
                if nxt not in done:
                    stack.append((nxt, 0))
            else:
                path.pop()
                on_path.discard(node)
                done.add(node)
    return None


def ancestors(spec: WorkflowSpec, name: str) -> set[str]:
    """The steps that must all succeed before step ``name`` starts."""
    needs = {step.name: step.needs for step in spec.steps}
    found: set[str] = set()
    todo = list(needs[name])
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(needs[current])
    return found


def check_references(spec: WorkflowSpec) -> None:
    """Raise InvalidSpec, naming the field, for a reference that is not valid:
    an unknown parameter, a required parameter without a value, a step that
    does not run before this one, or a step's output where it may not go."""
    for name, value in spec.params.items():
        if value is None:
            raise _invalid("the parameter has no value (give it at submit)", f"params.{name}")
    for i, step in enumerate(spec.steps):
        before = ancestors(spec, step.name)
        for part, action in (("job", step.job), ("revert", step.revert)):
            # A revert may use its own step's output (say, the id of what it made).
            visible = before | {step.name} if part == "revert" else before
            try:
                found = list(references(action))
            except BadReference as exc:
                raise _invalid(str(exc), f"steps.{i}.{part}") from None
            for where, ref in found:
                field = f"steps.{i}.{part}.{where}"
                _check_reference(spec, ref, field, where, visible)


def _check_reference(
    spec: WorkflowSpec, ref: Reference, field: str, where: str, visible: set[str]
) -> None:
    if ref.kind == "params":
        if ref.name not in spec.params:
            raise _invalid(f"params.{ref.name} is not a parameter of this workflow", field)
        return
    if not any(step.name == ref.name for step in spec.steps):
        raise _invalid(f"steps.{ref.name}: no step is named {ref.name!r}", field)
    if ref.name not in visible:
        raise _invalid(
            f"steps.{ref.name}.output: step {ref.name!r} does not run before this one "
            "(list it in needs)",
            field,
        )
    if where.split(".")[0] not in OUTPUT_FIELDS:
        raise _invalid(f"a step's output may be used only in {', '.join(OUTPUT_FIELDS)}", field)


def located(exc: InvalidSpec, where: str) -> InvalidSpec:
    """The error of a step's job spec, with its field named from the
    document's root (``where``: ``steps.2.job``)."""
    field = f"{where}.{exc.field}" if exc.field else where
    message = exc.message.removeprefix(f"{exc.field}: ") if exc.field else exc.message
    return type(exc)(f"{field}: {message}", field=field)


def action_spec(action: dict[str, Any], outputs: Mapping[str, Any], where: str) -> JobSpec:
    """A step's job or revert (at ``where``, parameters in) as the job spec
    it makes with ``outputs``; raises InvalidSpec naming the field from the
    document's root."""
    if "idempotency_key" in action:
        raise _invalid("a step's job cannot have one", f"{where}.idempotency_key")
    try:
        return job_spec(action, outputs)
    except InvalidSpec as exc:
        raise located(exc, where) from None


def check_document(spec: WorkflowSpec) -> None:
    """The checks of a document that need no server (``flow run --dry-run``):
    its graph, its references, and each step's job and revert as a job spec.
    The server's policy (its limits, the submitter's secrets) is checked at
    submit. Raises InvalidSpec naming the first bad field."""
    check_graph(spec)
    check_references(spec)
    outputs = placeholder_outputs(spec)
    for i, step in enumerate(spec.steps):
        for part, action in (("job", step.job), ("revert", step.revert)):
            if action is not None:
                action_spec(with_params(action, spec.params), outputs, f"steps.{i}.{part}")


def with_params(action: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The action with ``{{ params.NAME }}`` replaced."""
    rendered: dict[str, Any] = render(action, lambda ref: params[ref.name], ("params",))
    return rendered


# -- the job of a step ----------------------------------------------------------------


def job_spec(
    action: Mapping[str, Any],
    outputs: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
) -> JobSpec:
    """The job spec of an action (a step's job or revert, parameters already
    in) once the outputs it uses are known: its ``{{ steps.X.output }}``
    replaced, a call made into the command that runs it, ``labels`` added.
    Raises InvalidSpec (fields relative to the action) or BadReference."""
    fields = dict(
        render(dict(action), lambda ref: output_value(outputs[ref.name], ref), ("steps",))
    )
    call, args = fields.pop("call", None), fields.pop("args", None)
    if call is not None:
        if not isinstance(call, str) or not _CALL.fullmatch(call):
            raise InvalidSpec("call: must be 'module:function'", field="call")
        if fields.get("command") or fields.get("image"):
            raise InvalidSpec("call: a call runs no command or image of its own", field="call")
        if args is not None and not isinstance(args, dict):
            raise InvalidSpec("args: must be an object of keyword arguments", field="args")
        fields["command"] = [CALL_PROGRAM, call, json.dumps(args or {})]
    elif args is not None:
        raise InvalidSpec("args: go with a call", field="args")
    if labels:
        given = fields.get("labels")
        fields["labels"] = {**(given if isinstance(given, dict) else {}), **labels}
    try:
        return JobSpec.model_validate(fields)
    except ValidationError as exc:
        raise invalid_spec(exc) from None


def placeholder_outputs(spec: WorkflowSpec) -> dict[str, Any]:
    """Stand-in outputs that satisfy any path, to check a spec at submit."""
    return {step.name: _Anything() for step in spec.steps}


class _Anything(dict[str, Any]):
    """An output with every key (each one again an _Anything); written as 'x'."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return _Anything()
