"""The ids that tie a log line, a trace and a job together: the request's
trace id (``X-B3-TraceId``), its W3C ``traceparent``, and the job and
attempt being worked on.

Each is held in a context variable, set where it becomes known (the API's
trace middleware for a request, the worker for an attempt), so that every
log line written under it carries it (``log_format.py``) and every job
created under it stores it (``submit.new_job``). Imports nothing of jobdock's.

How the ids relate (docs/operating.md): the B3 id is 16 hex digits (64 bits)
or 32; a trace in OpenTelemetry has a 32-digit id, and it is the B3 id with
leading zeros (the B3 propagators' rule) or the 32-digit B3 id itself. A
request that brings a ``traceparent`` but no B3 id gets the low 64 bits of
that trace id as its B3 id.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

_B3 = re.compile(r"^(?:[0-9a-f]{16}|[0-9a-f]{32})$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32


@dataclass(frozen=True, slots=True)
class TraceIds:
    """A request's trace: its B3 id, and the ``traceparent`` a job it creates
    continues (the submit span's when traces are exported)."""

    b3: str
    traceparent: str | None = None

    @property
    def trace_id(self) -> str:
        """The 32-hex trace id the B3 id stands for."""
        return self.b3.rjust(32, "0")


@dataclass(frozen=True, slots=True)
class JobIds:
    """The job (and attempt) a piece of work is for."""

    job_id: str
    attempt: int | None = None


_trace: ContextVar[TraceIds | None] = ContextVar("jobdock_trace", default=None)
_job: ContextVar[JobIds | None] = ContextVar("jobdock_job", default=None)


def new_b3() -> str:
    """A new 64-bit B3 trace id (16 lowercase hex digits, never all zeros)."""
    while True:
        value = secrets.token_hex(8)
        if value != "0" * 16:
            return value


def b3_from(header: str | None, traceparent: str | None = None) -> str:
    """The B3 id of a request: its ``X-B3-TraceId`` when valid (lowercased),
    else the low 64 bits of a valid ``traceparent``'s trace id, else a new one."""
    if header is not None:
        value = header.strip().lower()
        if _B3.match(value) and value.strip("0"):
            return value
    parent = parse_traceparent(traceparent)
    if parent is not None:
        return parent[0][16:]
    return new_b3()


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """(trace id, span id, flags) of a valid W3C traceparent, else None."""
    if value is None:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match[1] == _ZERO_TRACE or match[2] == "0" * 16:
        return None
    return match[1], match[2], match[3]


def traceparent_of(b3: str) -> str:
    """A traceparent in the trace of ``b3`` with a new span id: what a job
    is given when no exported span stands for its submit."""
    return f"00-{b3.rjust(32, '0')}-{secrets.token_hex(8)}-01"


def current_trace() -> TraceIds | None:
    """The trace of the request being served, if any."""
    return _trace.get()


def current_job() -> JobIds | None:
    """The job being worked on, if any."""
    return _job.get()


@contextmanager
def in_trace(ids: TraceIds) -> Iterator[TraceIds]:
    """Work done inside belongs to the trace ``ids``."""
    token = _trace.set(ids)
    try:
        yield ids
    finally:
        _trace.reset(token)


@contextmanager
def for_job(job_id: str, attempt: int | None = None, b3: str | None = None) -> Iterator[None]:
    """Work done inside is for ``job_id``'s ``attempt`` (and its trace ``b3``)."""
    job_token = _job.set(JobIds(job_id, attempt))
    trace_token = _trace.set(TraceIds(b3)) if b3 else None
    try:
        yield
    finally:
        if trace_token is not None:
            _trace.reset(trace_token)
        _job.reset(job_token)
