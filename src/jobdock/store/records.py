"""Reading stored records that may no longer load.

A record written by an older jobdock (or by hand) can fail today's
validation. No reader may then fail for everyone: a job that cannot be
loaded is shown with what can be read of it and a message saying why (the
claim fails it with reason ``invalid_record``), and a schedule that cannot
be loaded is skipped by the scheduler and shown paused.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from jobdock.models import (
    ANONYMOUS,
    Job,
    JobSpec,
    JobState,
    Reason,
    Schedule,
    timestamp,
)

_log = logging.getLogger(__name__)

#: What loading a record may raise: a validation error (a ValueError), or a
#: time or number out of range.
UNLOADABLE = (ValueError, OverflowError, OSError)


def load_spec(text: str | bytes) -> JobSpec | str:
    """The job spec stored as ``text``, or why it cannot be loaded."""
    try:
        return JobSpec.model_validate_json(text)
    except ValidationError as exc:
        return f"its spec is invalid: {_first_problem(exc)}"
    except UNLOADABLE as exc:
        return f"its spec is invalid: {exc}"


def why_unloadable(exc: BaseException) -> str:
    """One line on why a record could not be loaded."""
    if isinstance(exc, ValidationError):
        return _first_problem(exc)
    return f"{type(exc).__name__}: {exc}"


def invalid_record_message(why: str) -> str:
    """The message of a job failed because its record cannot be loaded."""
    return f"the stored job cannot be loaded ({why}); it was not run"


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "spec"
    return f"{where}: {error.get('msg', 'invalid')}"


def _safe_time(epoch: Any) -> datetime | None:
    try:
        return timestamp(epoch)
    except (*UNLOADABLE, TypeError):
        return None


def _safe_state(value: Any) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        return JobState.FAILED


def unloadable_job(row: Any, exc: BaseException) -> Job:
    """What can be shown of a job row that does not load: its id, owner,
    state and times, an empty spec, and a message saying why."""
    why = why_unloadable(exc)
    _log.warning("job %s cannot be loaded: %s", row.id, why)
    state = _safe_state(row.state)
    reason = None
    if state.terminal:
        try:
            reason = Reason(row.reason) if row.reason else None
        except ValueError:
            reason = None
    created = _safe_time(row.created_at) or datetime.fromtimestamp(0, UTC)
    return Job.model_construct(
        id=row.id,
        name=None,
        owner=row.owner if isinstance(row.owner, str) else ANONYMOUS,
        state=state,
        labels={},
        spec=JobSpec.model_construct(),
        stdin_bytes=0,
        created_at=created,
        started_at=_safe_time(row.started_at),
        finished_at=_safe_time(row.finished_at),
        exit_code=None,
        signal=None,
        reason=reason,
        message=invalid_record_message(why) if not state.terminal else row.message,
        attempt=row.attempt if isinstance(row.attempt, int) else 0,
        cancel_requested=bool(row.cancel_requested),
        next_attempt_at=None,
        attempts=[],
    )


def unloadable_schedule(row: Any, exc: BaseException) -> Schedule:
    """What can be shown of a schedule row that does not load: shown
    paused, with an empty job, so that its owner can see and remove it."""
    _log.warning("schedule %r cannot be loaded: %s", row.name, why_unloadable(exc))
    return Schedule.model_construct(
        name=str(row.name),
        owner=row.owner if isinstance(row.owner, str) else ANONYMOUS,
        cron=str(row.cron),
        tz=str(row.tz),
        job=JobSpec.model_construct(),
        overlap="allow",
        catchup="skip",
        paused=True,
        created_at=_safe_time(row.created_at) or datetime.fromtimestamp(0, UTC),
        next_fire_at=None,
        last_fire_at=_safe_time(row.last_fire_at),
        last_job_id=row.last_job_id,
    )
