"""``/v1/schedules``: cron schedules; and ``/v1/prune``: retention on demand."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from jobdock.errors import InvalidRequest
from jobdock.models import PruneResult, Schedule, ScheduleList, ScheduleSpec, parse_duration
from jobdock.schedules import next_fire_time, validate
from jobdock.settings import Settings
from jobdock.store.protocol import Store

router = APIRouter(prefix="/v1")


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


@router.post("/schedules", status_code=201, response_model=Schedule, summary="Add a schedule")
async def create_schedule(spec: ScheduleSpec, request: Request) -> Schedule:
    """Add a cron schedule; 409 if one of that name exists."""
    validate(spec)
    now = time.time()
    return await _store(request).create_schedule(spec, now, next_fire_time(spec.cron, spec.tz, now))


@router.get("/schedules", response_model=ScheduleList, summary="List schedules")
async def list_schedules(request: Request) -> ScheduleList:
    """Every schedule, by name, with its next fire time."""
    return ScheduleList(schedules=await _store(request).list_schedules())


@router.get("/schedules/{name}", response_model=Schedule, summary="Get a schedule")
async def get_schedule(name: str, request: Request) -> Schedule:
    return await _store(request).get_schedule(name)


@router.delete("/schedules/{name}", status_code=204, summary="Remove a schedule")
async def delete_schedule(name: str, request: Request) -> Response:
    """Remove a schedule; the jobs it made stay."""
    await _store(request).delete_schedule(name)
    return Response(status_code=204)


@router.post("/schedules/{name}/pause", response_model=Schedule, summary="Pause a schedule")
async def pause_schedule(name: str, request: Request) -> Schedule:
    """Stop firing until resumed."""
    return await _store(request).set_schedule_paused(name, True, None)


@router.post("/schedules/{name}/resume", response_model=Schedule, summary="Resume a schedule")
async def resume_schedule(name: str, request: Request) -> Schedule:
    """Fire again from the next fire time after now (times missed while
    paused are not caught up)."""
    store = _store(request)
    schedule = await store.get_schedule(name)
    upcoming = next_fire_time(schedule.cron, schedule.tz, time.time())
    return await store.set_schedule_paused(name, False, upcoming)


@router.post("/prune", response_model=PruneResult, summary="Delete finished jobs now")
async def prune(
    request: Request,
    older_than: Annotated[
        str | None, Query(description="Jobs finished longer ago than this, e.g. '1d'.")
    ] = None,
) -> PruneResult:
    """Delete finished jobs with their attempts and logs: those finished
    longer than ``older_than`` ago, or by default those past their retention
    (the job's ``keep_for``, else the server's ``keep_finished``)."""
    settings: Settings = request.app.state.settings
    age = None
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            raise InvalidRequest(f"older_than: {exc}", field="older_than") from None
    deleted = await _store(request).prune(time.time(), settings.keep_finished, age)
    return PruneResult(deleted=deleted)
