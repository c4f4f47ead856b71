"""What the client sends: a spec, a workflow, a schedule or a batch from
what the caller gave (a model or a mapping), checked here before a
request is made; batches cut to the server's size; the queries of a
listing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jobdock.errors import InvalidSpec
from jobdock.models import (
    MAX_BATCH,
    Flow,
    JobSpec,
    JobState,
    ScheduleSpec,
    WorkflowSpec,
    invalid_spec,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
SpecLike = JobSpec | Mapping[str, Any]
WorkflowLike = WorkflowSpec | Flow | Mapping[str, Any]


def _checked(model: type[M], given: M | Mapping[str, Any]) -> M:
    """``given`` as a ``model``; raises InvalidSpec naming the bad field."""
    if isinstance(given, model):
        return given
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        raise invalid_spec(exc) from None


def as_spec(spec: SpecLike) -> JobSpec:
    """``spec`` as a JobSpec; raises InvalidSpec naming the bad field."""
    return _checked(JobSpec, spec)


def spec_body(spec: SpecLike) -> dict[str, Any]:
    """The JSON document of a submit: the spec without its defaults."""
    return as_spec(spec).model_dump(mode="json", exclude_defaults=True)


def batch_bodies(specs: Iterable[SpecLike]) -> list[dict[str, Any]]:
    """Every spec's document, all checked before any is sent; raises
    InvalidSpec naming the first bad one's index (``jobs.3.command``)."""
    bodies = []
    for index, spec in enumerate(specs):
        try:
            bodies.append(spec_body(spec))
        except InvalidSpec as exc:
            where = f"jobs.{index}"
            field = f"{where}.{exc.field}" if exc.field else where
            message = exc.message.removeprefix(f"{exc.field}: ") if exc.field else exc.message
            raise InvalidSpec(f"{field}: {message}", field=field) from None
    return bodies


def chunks(items: Sequence[T], size: int = MAX_BATCH) -> Iterator[Sequence[T]]:
    """``items`` in pieces of at most ``size`` (a batch the server takes)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_workflow(workflow: WorkflowLike) -> WorkflowSpec:
    """``workflow`` as a WorkflowSpec; raises InvalidSpec naming the bad field."""
    if isinstance(workflow, Flow):
        return workflow.spec()
    return _checked(WorkflowSpec, workflow)


def as_schedule(spec: ScheduleSpec | Mapping[str, Any]) -> ScheduleSpec:
    """``spec`` as a ScheduleSpec; raises InvalidSpec naming the bad field."""
    return _checked(ScheduleSpec, spec)


def list_query(
    states: Sequence[JobState | str],
    labels: Mapping[str, str] | None,
    name: str | None,
    limit: int,
    cursor: str | None,
    owner: str | None,
) -> list[tuple[str, str | int]]:
    """The query of a job listing with these filters."""
    params: list[tuple[str, str | int]] = [("state", str(s)) for s in states]
    if owner is not None:
        params.append(("owner", owner))
    params += [("label", f"{k}={v}") for k, v in (labels or {}).items()]
    if name is not None:
        params.append(("name", name))
    if cursor is not None:
        params.append(("cursor", cursor))
    params.append(("limit", limit))
    return params


def owner_query(owner: str | None) -> dict[str, str] | None:
    """The query naming a schedule's owner, where one is given (admins)."""
    return None if owner is None else {"owner": owner}
