"""``/v1/workers``: the workers that share this server's store."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from jobdock.api.auth import principal
from jobdock.models import WorkerList
from jobdock.settings import Settings
from jobdock.store.protocol import Store

router = APIRouter(prefix="/v1")

#: Stopped or lost workers stay listed this long.
LISTED_SECONDS = 600.0


@router.get("/workers", response_model=WorkerList, summary="List workers")
async def list_workers(request: Request) -> WorkerList:
    """Workers alive now, and those stopped or lost in the last ten minutes,
    with their labels, last heartbeat and running jobs: the ids of your own
    (an admin's: everyone's), and how many run in all (``busy``)."""
    store: Store = request.app.state.store
    settings: Settings = request.app.state.settings
    who = principal(request)
    now = time.time()
    found = await store.list_workers(
        now - LISTED_SECONDS, now - settings.lease_seconds, None if who.admin else who.name
    )
    return WorkerList(workers=found)
