"""The keyword options of :class:`~jobdock.Client` methods that pass them on
to :class:`~jobdock.AsyncClient`, typed (each is the async method's keyword
parameters; see there for what they mean)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

from jobdock.models import JobState, Stream


class ListFilters(TypedDict, total=False):
    """``Client.list``'s filters."""

    states: Sequence[JobState | str]
    labels: Mapping[str, str] | None
    name: str | None
    limit: int
    cursor: str | None
    owner: str | None


class LogOptions(TypedDict, total=False):
    """``Client.logs``'s options."""

    stream: Stream | None
    follow: bool
    offset: int
    attempt: int | None
    tail: int | None
    since: str | float | None
    timestamps: bool


class PageOptions(TypedDict, total=False):
    """``Client.audit``'s options: one page."""

    limit: int
    cursor: str | None


class WorkflowFilters(PageOptions, total=False):
    """``Client.workflows``'s filters."""

    states: Sequence[str]


class TemplateRequest(TypedDict, total=False):
    """``Client.test_template``'s request, but its body."""

    path: str | None
    query: Mapping[str, str] | None
    headers: Mapping[str, str] | None
