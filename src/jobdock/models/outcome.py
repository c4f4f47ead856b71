"""How an attempt ended: the runtime's ExitStatus (with what the attempt
used), the Outcome the store records, and the rules from one to the other.

Imports only its sibling jobdock.models.states.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobdock.models.states import JobState, Reason


@dataclass(frozen=True, slots=True)
class Accounting:
    """How an attempt was confined and what it used."""

    #: e.g. 'cgroup v1', 'cgroup v2+namespaces', or 'none'.
    isolation: str = "none"
    #: The limits that applied (field -> value), as in the spec's resources.
    limits: Mapping[str, Any] | None = None
    peak_memory: int | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How the main process ended: an exit code, or the signal that killed it.

    ``reason`` is set when the runtime knows why better than the exit does
    (e.g. ``oom``: a SIGKILL from the kernel's OOM killer); ``message`` then
    says it in words. A ``message`` without a ``reason`` is a remark added to
    the outcome (e.g. that it ran with less isolation than it asked for).
    ``limit`` says which limit the job ran into (e.g. that it reached its
    process limit): the outcome's message leads with it, whatever else
    ended the job (a fork bomb that is then killed by its timeout).
    """

    exit_code: int | None = None
    signal: int | None = None
    reason: Reason | None = None
    message: str | None = None
    limit: str | None = None
    #: Set by runtimes that confine and measure their jobs; not part of
    #: how the process ended, so statuses compare without it.
    accounting: Accounting | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended."""

    state: JobState
    reason: Reason
    message: str
    finished_at: float
    exit_code: int | None = None
    signal: int | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    #: With state ``retrying``: when the next attempt may start.
    next_attempt_at: float | None = None
    #: How the attempt was confined and what it used (see Accounting).
    isolation: str | None = None
    limits: dict[str, Any] | None = None
    peak_memory: int | None = None
    cpu_seconds: float | None = None


def describe_exit(status: ExitStatus) -> str:
    """'exited with code 3' or 'killed by signal 9 (SIGKILL)'."""
    if status.signal is not None:
        try:
            name = signal.Signals(status.signal).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {status.signal} ({name})"
    return f"exited with code {status.exit_code}"


def outcome_of(status: ExitStatus, stop_reason: Reason | None, timeout: float | None) -> Outcome:
    """The outcome of an attempt from how its process ended and why it was stopped."""
    how = describe_exit(status)
    if stop_reason is Reason.CANCELLED:
        state, reason, message = JobState.CANCELLED, Reason.CANCELLED, f"stopped on request; {how}"
    elif stop_reason is Reason.TIMEOUT:
        state, reason = JobState.FAILED, Reason.TIMEOUT
        message = f"timed out after {timeout:g}s; {how}"
    elif stop_reason is Reason.DEADLINE:
        state, reason = JobState.FAILED, Reason.DEADLINE
        message = f"stopped at its total_timeout; {how}"
    elif stop_reason is Reason.OUTPUT_LIMIT:
        state, reason = JobState.FAILED, Reason.OUTPUT_LIMIT
        message = f"stopped for writing more output than its limit; {how}"
    elif status.reason is not None:
        state, reason = JobState.FAILED, status.reason
        message = f"{status.message}; {how}" if status.message else how
    elif status.signal is not None:
        state, reason, message = JobState.FAILED, Reason.SIGNALED, how
    else:
        state = JobState.SUCCEEDED if status.exit_code == 0 else JobState.FAILED
        reason, message = Reason.EXITED, how
    if status.message and status.reason is None:
        message = f"{message}; {status.message}"
    if status.limit:
        message = f"{status.limit}; {message}"
    accounting = status.accounting
    return Outcome(
        state=state,
        reason=reason,
        message=message,
        finished_at=time.time(),
        exit_code=status.exit_code,
        signal=status.signal,
        isolation=accounting.isolation if accounting else None,
        limits=dict(accounting.limits or {}) if accounting else None,
        peak_memory=accounting.peak_memory if accounting else None,
        cpu_seconds=accounting.cpu_seconds if accounting else None,
    )
