"""docker-job-dispatcher's health checks (docs/dispatch.md): ``GET
/health/live`` answers 204 while the process serves; ``GET /health/ready``
answers 204 when the store answers and, on a server that runs image jobs,
the container engine does too, else 503 ``not_ready`` naming which did not. Both need no
credentials, as ``/healthz`` does not."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from jobdock.api.context import store_of
from jobdock.api.errors import responses
from jobdock.engines import Engines
from jobdock.errors import CrossOrigin, JobdockError, NotReady, StoreError

_log = logging.getLogger(__name__)

#: The paths, public (api/auth.py).
PATHS = frozenset({"/health/live", "/health/ready"})
#: How long each part may take to answer before it counts as down.
CHECK_SECONDS = 3.0

router = APIRouter(tags=["health"])


@router.get(
    "/health/live",
    status_code=204,
    response_class=Response,
    summary="Liveness: 204 while the server answers",
    responses=responses(CrossOrigin, StoreError),
)
async def live() -> Response:
    return Response(status_code=204)


@router.get(
    "/health/ready",
    status_code=204,
    response_class=Response,
    summary="Readiness: 204 when the store (and the container engine, if used) answers",
    responses=responses(CrossOrigin, StoreError, NotReady),
)
async def ready(request: Request) -> Response:
    down = await _down(request)
    if down is not None:
        raise NotReady(down)
    return Response(status_code=204)


async def _down(request: Request) -> str | None:
    """What does not answer, or None."""
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await store_of(request).list_jobs(limit=1)
    except (JobdockError, TimeoutError, OSError) as exc:
        return f"the store does not answer: {_said(exc)}"
    engines: Engines | None = getattr(request.app.state, "engines", None)
    if engines is not None and engines.containers is not None:
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                await engines.containers.engine.ping()
        except (JobdockError, TimeoutError, OSError) as exc:
            return f"the container engine does not answer: {_said(exc)}"
    return None


def _said(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
