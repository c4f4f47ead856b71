"""Cron schedules: their fire times, and the loop that submits their jobs.

Fire times come from croniter, read in the schedule's IANA time zone
(zoneinfo). Around daylight-saving changes (docs/scheduling.md):

- spring forward: a time that does not exist that day (02:30 when clocks
  jump from 02:00 to 03:00) fires at the first instant after the gap (03:00);
- fall back: an expression with a fixed hour fires once, in the first pass
  through the repeated hour; one with ``*`` in its hour field (``*/15 * * *
  *``) fires in both passes, as the real time goes on.

Every function here takes the time as an argument; only :class:`Scheduler`
reads a clock, and it takes the clock as a parameter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from jobdock.errors import InvalidSpec, JobdockError
from jobdock.models import Schedule, ScheduleSpec
from jobdock.models.records import FirePlan
from jobdock.store.protocol import Store
from jobdock.submit import Policy, new_job

_log = logging.getLogger(__name__)

#: The label every job of a schedule carries, with the schedule's name.
SCHEDULE_LABEL = "jobdock.schedule"
#: Fire times walked through at most when catching up; past that, the
#: latest missed one is looked up directly.
_MAX_STEPS = 1000


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSpec(f"tz: {tz!r} is not a known time zone", field="tz") from None


def validate(spec: ScheduleSpec) -> None:
    """Raise InvalidSpec unless the schedule's cron expression and time zone are valid."""
    _zone(spec.tz)
    fields = spec.cron.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(spec.cron):
        raise InvalidSpec(
            f"cron: {spec.cron!r} is not a cron expression of 5 fields "
            "(minute hour day month weekday) or 6 (with seconds last)",
            field="cron",
        )
    try:
        croniter(spec.cron, datetime.now(_zone(spec.tz))).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidSpec(
            f"cron: {spec.cron!r} never fires (no date matches it)", field="cron"
        ) from None


def _fixed_hour(cron: str) -> bool:
    return "*" not in cron.split()[1]


def next_fire_time(cron: str, tz: str, after: float) -> float:
    """The first fire time of ``cron`` in ``tz`` strictly after ``after``
    (epoch seconds), with the daylight-saving rules of this module."""
    zone = _zone(tz)
    start = datetime.fromtimestamp(after, zone)
    wall = start.replace(tzinfo=None)
    fixed = _fixed_hour(cron)
    try:
        times = croniter(cron, start)
    except CroniterBadCronError as exc:
        raise InvalidSpec(f"cron: {exc}", field="cron") from None
    while True:
        try:
            candidate: datetime = times.get_next(datetime)
        except CroniterBadDateError:
            raise InvalidSpec(f"cron: {cron!r} never fires", field="cron") from None
        if candidate.timestamp() <= after:
            continue
        # Clocks went back: a fixed-hour time already passed on the wall clock.
        if fixed and candidate.replace(tzinfo=None) <= wall:
            continue
        return candidate.timestamp()


def latest_fire_time(cron: str, tz: str, first: float, now: float) -> float:
    """The latest fire time from ``first`` (a fire time) up to ``now``."""
    latest, steps = first, 0
    following = next_fire_time(cron, tz, latest)
    while following <= now:
        steps += 1
        if steps > _MAX_STEPS:
            previous: datetime = croniter(cron, datetime.fromtimestamp(now, _zone(tz))).get_prev(
                datetime
            )
            return max(first, previous.timestamp())
        latest, following = following, next_fire_time(cron, tz, following)
    return latest


def plan_turn(schedule: Schedule, now: float, policy: Policy) -> FirePlan:
    """What to do for a schedule whose next fire time has come: the fire
    time to run (the latest one due; None if it was missed by more than the
    server's ``misfire_seconds`` and the schedule skips missed fires), the
    next one, and the job to submit (made under ``policy``: a job the policy
    refuses now is not submitted, and that fire is skipped with a warning)."""
    assert schedule.next_fire_at is not None
    expected = schedule.next_fire_at.timestamp()
    latest = latest_fire_time(schedule.cron, schedule.tz, expected, now)
    following = next_fire_time(schedule.cron, schedule.tz, max(now, latest))
    fire_at: float | None = latest
    if now - latest > policy.settings.misfire_seconds and schedule.catchup == "skip":
        fire_at = None
    job = None
    if fire_at is not None:
        spec = schedule.job.model_copy(
            update={
                "idempotency_key": f"schedule:{schedule.name}:{fire_at:.0f}",
                "labels": {**schedule.job.labels, SCHEDULE_LABEL: schedule.name},
            }
        )
        try:
            job = new_job(spec, schedule.owner, policy, now)
        except InvalidSpec as exc:
            # Skipped, not left due: it would be due again at once, forever.
            _log.warning("schedule %s: this server refuses its job (%s)", schedule.name, exc)
            fire_at = None
    return FirePlan(schedule.name, expected, following, fire_at, job, schedule.owner)


class Scheduler:
    """Submits the jobs of the store's schedules at their fire times. Every
    worker runs one; the store makes sure a fire time makes one job."""

    def __init__(
        self, store: Store, policy: Policy, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.policy = policy
        self.settings = policy.settings
        self.clock = clock

    async def run_once(self) -> float | None:
        """Fire the schedules that are due; returns the next fire time."""
        now = self.clock()
        for schedule in await self.store.due_schedules(now):
            try:
                plan = plan_turn(schedule, now, self.policy)
            except (JobdockError, ValueError, OverflowError) as exc:
                # One schedule that cannot fire must not stop the others.
                _log.warning("schedule %s cannot fire: %s", schedule.name, exc)
                continue
            job_id = await self.store.fire_schedule(plan, now)
            if job_id is not None:
                _log.info("schedule %s submitted job %s", schedule.name, job_id)
        return await self.store.next_schedule_fire()

    async def run(self) -> None:
        """Fire schedules until cancelled, waking at each next fire time, and
        at once when a schedule is added or resumed (here, or in another
        process: the store's events)."""
        poll = self.settings.poll_seconds
        while True:
            try:
                upcoming = await self.run_once()
            except JobdockError as exc:
                _log.warning("cannot fire schedules: %s", exc)
                upcoming = None
            wait = poll if upcoming is None else min(poll, upcoming - self.clock())
            await self.store.events.wait_schedules(max(wait, 0.0))
