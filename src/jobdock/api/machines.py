"""``/v1/machines``: the machine pools, their machines and what the
autoscaler last decided (admins only; docs/machines.md#watching-machines)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from jobdock.api.auth import require_admin
from jobdock.api.context import settings_of, store_of
from jobdock.api.errors import responses
from jobdock.errors import Forbidden, InvalidRequest, PoolNotFound
from jobdock.machines.report import MachinesReport, machines_report
from jobdock.models import parse_duration

router = APIRouter(prefix="/v1")

#: Stopped and failed machines are listed this far back by default...
DEFAULT_SINCE = 86400.0
#: ... and at most this far.
MAX_SINCE = 366 * 86400.0


def since_seconds(given: str | None) -> float:
    """The ``since`` parameter in seconds (InvalidRequest if it is not a
    duration up to MAX_SINCE)."""
    if given is None:
        return DEFAULT_SINCE
    try:
        seconds = parse_duration(given)
    except ValueError as exc:
        raise InvalidRequest(f"since: {exc}", field="since") from None
    if seconds > MAX_SINCE:
        raise InvalidRequest("since: at most 366d", field="since")
    return seconds


@router.get(
    "/machines",
    response_model=MachinesReport,
    summary="List machine pools and machines",
    responses=responses(Forbidden, PoolNotFound, InvalidRequest),
)
async def list_machines(
    request: Request,
    pool: Annotated[
        str | None, Query(max_length=64, description="Only this pool and its machines.")
    ] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Stopped and failed machines that ended this long ago or later "
            "(a duration: 1h, 7d; default 24h, at most 366d). Live ones are always listed.",
        ),
    ] = None,
) -> MachinesReport:
    """The configured pools (live machines by state, back-off, the
    autoscaler's last decision) and their machines, newest first: state,
    the jobs each runs now, and the times that cost money (admins only)."""
    require_admin(request)
    seconds = since_seconds(since)
    now = time.time()
    pools = settings_of(request).pools
    return await machines_report(store_of(request), pools, pool, now - seconds, now)
