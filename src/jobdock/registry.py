"""Workflows defined in Python and registered by packages, like Jobrunner's
``register_job`` plugins (docs/workflows.md).

A package registers a factory under the entry point group
``jobdock.workflows``::

    [project.entry-points."jobdock.workflows"]
    deploy = "myteam.flows:deploy"

The factory takes the workflow's parameters as keyword arguments and returns
a :class:`jobdock.Flow`, a :class:`jobdock.WorkflowSpec` or a mapping of one.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from jobdock.errors import InvalidSpec, JobdockError
from jobdock.models.workflow import Flow, WorkflowSpec, document

GROUP = "jobdock.workflows"


class UnknownFlow(JobdockError):
    """No workflow of that name is registered."""

    code = "unknown_flow"


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter of a registered workflow's factory."""

    name: str
    required: bool
    default: Any = None
    annotation: str = ""


@dataclass(frozen=True, slots=True)
class RegisteredFlow:
    """A registered workflow: its name, where its factory is, its parameters."""

    name: str
    target: str
    params: list[Param] = field(default_factory=list)
    summary: str = ""


def _entry_points() -> dict[str, EntryPoint]:
    return {point.name: point for point in entry_points(group=GROUP)}


def _load(point: EntryPoint) -> Callable[..., Any]:
    try:
        factory: Callable[..., Any] = point.load()
    except Exception as exc:
        raise JobdockError(
            f"workflow {point.name!r} cannot be loaded from {point.value}: {exc}"
        ) from None
    return factory


def _params(factory: Callable[..., Any]) -> list[Param]:
    found = []
    for parameter in inspect.signature(factory).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        required = parameter.default is parameter.empty
        annotation = parameter.annotation
        found.append(
            Param(
                parameter.name,
                required,
                None if required else parameter.default,
                "" if annotation is parameter.empty else str(annotation),
            )
        )
    return found


def registered() -> list[RegisteredFlow]:
    """Every registered workflow, by name."""
    flows = []
    for name, point in sorted(_entry_points().items()):
        factory = _load(point)
        summary = (inspect.getdoc(factory) or "").strip().split("\n")[0]
        flows.append(RegisteredFlow(name, point.value, _params(factory), summary))
    return flows


def build(name: str, params: Mapping[str, Any]) -> WorkflowSpec:
    """The document of registered workflow ``name`` with ``params``; raises
    UnknownFlow, or InvalidSpec for parameters it does not take or lacks."""
    point = _entry_points().get(name)
    if point is None:
        raise UnknownFlow(f"no workflow named {name!r} is registered (see 'jobdock flow ls')")
    factory = _load(point)
    accepted = {param.name: param for param in _params(factory)}
    for key in params:
        if key not in accepted:
            raise InvalidSpec(
                f"params.{key}: workflow {name!r} takes no such parameter", field=f"params.{key}"
            )
    for param in accepted.values():
        if param.required and param.name not in params:
            raise InvalidSpec(
                f"params.{param.name}: required by workflow {name!r}", field=f"params.{param.name}"
            )
    made = factory(**params)
    if isinstance(made, Flow):
        return made.spec()
    if isinstance(made, WorkflowSpec):
        return made
    return document(made)


def parse_param(item: str) -> tuple[str, Any]:
    """``NAME=VALUE`` from the command line: the value as JSON if it is JSON
    (``3``, ``true``, ``[1,2]``), else as the string it is. Raises ValueError."""
    name, sep, text = item.partition("=")
    if not sep or not name:
        raise ValueError(f"{item!r} is not NAME=VALUE")
    try:
        return name, json.loads(text)
    except ValueError:
        return name, text
