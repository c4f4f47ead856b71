"""``/v1/schedules``: cron schedules; and ``/v1/prune``: retention on demand.

A schedule belongs to the user who added it, and so do the jobs it submits.
Names are per owner: ``/v1/schedules/{name}`` is the caller's own schedule
of that name; an admin reaches another user's with ``?owner=``, which for
anyone else finds nothing (answered as a schedule that does not exist).
Pruning deletes every user's jobs, so it is for admins.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from jobdock.api.auth import principal, require_admin
from jobdock.api.context import policy_of, settings_of, store_of
from jobdock.api.errors import JSON_BODY, responses
from jobdock.auth import Principal
from jobdock.errors import (
    Forbidden,
    InvalidRequest,
    InvalidSpec,
    ScheduleExists,
    ScheduleNotFound,
)
from jobdock.models import PruneResult, Schedule, ScheduleList, ScheduleSpec, parse_duration
from jobdock.schedules import next_fire_time, validate
from jobdock.store.protocol import Store
from jobdock.submit import check_spec

router = APIRouter(prefix="/v1")
# {name} routes also take ?owner= (a NUL or a bad value there is a 422).
_NOT_FOUND = responses(ScheduleNotFound, InvalidRequest)


#: Whose schedule a name is: the caller's, unless an admin names another owner.
OwnerQuery = Annotated[
    str | None,
    Query(
        max_length=128,
        description="The owner of the schedule (admins; default: you). Names are per owner.",
    ),
]


async def _visible(
    request: Request, name: str, owner: str | None
) -> tuple[Store, Principal, Schedule]:
    """The schedule ``name`` of ``owner`` (default: the caller), if the
    request's user may see it; else ScheduleNotFound."""
    store, who = store_of(request), principal(request)
    owner = who.name if owner is None else owner
    if not who.may_see(owner):
        raise ScheduleNotFound(name)
    return store, who, await store.get_schedule(name, owner=owner)


@router.post(
    "/schedules",
    status_code=201,
    response_model=Schedule,
    summary="Add a schedule",
    responses=responses(*JSON_BODY, InvalidSpec, ScheduleExists),
)
async def create_schedule(spec: ScheduleSpec, request: Request) -> Schedule:
    """Add a cron schedule of yours; its job must pass the checks a submit
    does (secrets must be yours). 409 if you have a schedule of that name
    (another user's names are theirs: they neither collide nor show)."""
    validate(spec)
    store, owner = store_of(request), principal(request).name
    # The schedule keeps its job as the policy leaves it (default limits filled in).
    job = await check_spec(store, spec.job, policy_of(request.app.state), owner)
    spec = spec.model_copy(update={"job": job})
    now = time.time()
    upcoming = next_fire_time(spec.cron, spec.tz, now)
    return await store.create_schedule(spec, now, upcoming, owner)


@router.get("/schedules", response_model=ScheduleList, summary="List schedules")
async def list_schedules(request: Request) -> ScheduleList:
    """Your schedules (an admin's: everyone's), by name, with their next fire time."""
    who = principal(request)
    owner = None if who.admin else who.name
    return ScheduleList(schedules=await store_of(request).list_schedules(owner))


@router.get(
    "/schedules/{name}",
    response_model=Schedule,
    summary="Get a schedule",
    responses=_NOT_FOUND,
)
async def get_schedule(name: str, request: Request, owner: OwnerQuery = None) -> Schedule:
    _, _, schedule = await _visible(request, name, owner)
    return schedule


@router.delete(
    "/schedules/{name}", status_code=204, summary="Remove a schedule", responses=_NOT_FOUND
)
async def delete_schedule(name: str, request: Request, owner: OwnerQuery = None) -> Response:
    """Remove a schedule; the jobs it made stay."""
    store, who, schedule = await _visible(request, name, owner)
    await store.delete_schedule(name, who.name, owner=schedule.owner)
    return Response(status_code=204)


@router.post(
    "/schedules/{name}/pause",
    response_model=Schedule,
    summary="Pause a schedule",
    responses=_NOT_FOUND,
)
async def pause_schedule(name: str, request: Request, owner: OwnerQuery = None) -> Schedule:
    """Stop firing until resumed."""
    store, _, schedule = await _visible(request, name, owner)
    return await store.set_schedule_paused(name, True, None, owner=schedule.owner)


@router.post(
    "/schedules/{name}/resume",
    response_model=Schedule,
    summary="Resume a schedule",
    responses=_NOT_FOUND,
)
async def resume_schedule(name: str, request: Request, owner: OwnerQuery = None) -> Schedule:
    """Fire again from the next fire time after now (times missed while
    paused are not caught up)."""
    store, _, schedule = await _visible(request, name, owner)
    upcoming = next_fire_time(schedule.cron, schedule.tz, time.time())
    return await store.set_schedule_paused(name, False, upcoming, owner=schedule.owner)


@router.post(
    "/prune",
    response_model=PruneResult,
    summary="Delete finished jobs now",
    responses=responses(Forbidden, InvalidRequest),
)
async def prune(
    request: Request,
    older_than: Annotated[
        str | None, Query(description="Jobs finished longer ago than this, e.g. '1d'.")
    ] = None,
) -> PruneResult:
    """Delete finished jobs with their attempts and logs: those finished
    longer than ``older_than`` ago, or by default those past their retention
    (the job's ``keep_for``, else the server's ``keep_finished``). Admins
    only: it deletes every user's jobs."""
    require_admin(request)
    age = None
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            raise InvalidRequest(f"older_than: {exc}", field="older_than") from None
    deleted = await store_of(request).prune(time.time(), settings_of(request).keep_finished, age)
    return PruneResult(deleted=deleted)
