"""The ASGI application: the routes, the error table and the lifespan that
owns the store and the embedded worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from jobdock import __version__
from jobdock.api.access import router as access_router
from jobdock.api.auth import Authenticate
from jobdock.api.conjob import router as conjob_router
from jobdock.api.dashboard import router as dashboard_router
from jobdock.api.dispatch import router as dispatch_router
from jobdock.api.errors import GUARDED, drop_framework_validation, install_error_handlers, responses
from jobdock.api.jobs import router as jobs_router
from jobdock.api.limits import BodyLimit
from jobdock.api.metrics import CountRequests, HttpMetrics
from jobdock.api.metrics import router as metrics_router
from jobdock.api.nul import RefuseNul
from jobdock.api.origin import SameOrigin
from jobdock.api.schedules import router as schedules_router
from jobdock.api.workers import router as workers_router
from jobdock.api.workflows import router as workflows_router
from jobdock.dispatch import Dispatcher, FilterPool, load_templates
from jobdock.errors import CrossOrigin, StoreError
from jobdock.settings import Settings
from jobdock.store.sql import SqlStore
from jobdock.vault import Vault
from jobdock.worker import Worker

_log = logging.getLogger(__name__)


def create_app(settings: Settings, *, embedded_worker: bool = True) -> FastAPI:
    """The jobdock API; its lifespan opens the store and runs a worker.
    Raises ConfigError for a bad secret key or dispatch template."""
    vault = Vault.of(settings)
    templates = load_templates(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = SqlStore(settings.db_url, sqlite_synchronous=settings.sqlite_synchronous)
        await store.open()
        app.state.store = store
        app.state.settings = settings
        app.state.vault = vault
        pool = FilterPool(
            settings.dispatch_processes, settings.dispatch_timeout, settings.dispatch_max_bytes
        )
        app.state.dispatcher = Dispatcher(templates, pool, settings)
        worker = Worker(store, settings) if embedded_worker else None
        if worker is not None:
            # Jobs this server's worker could not confine are refused at
            # submit where its configuration says so (unisolated: refuse).
            app.state.missing = worker.missing
        try:
            if templates:
                await pool.start()
            if worker is not None:
                await worker.start()
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await pool.close()
            await store.close()

    app = FastAPI(
        title="jobdock",
        version=__version__,
        summary="Run Linux processes as jobs.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    http_metrics = HttpMetrics()
    app.state.http_metrics = http_metrics
    guarded = responses(*GUARDED)
    # ConJob's router before dispatch's: its /job/run comes before POST /job/{template}.
    for router in (
        jobs_router,
        workers_router,
        conjob_router,
        dispatch_router,
        access_router,
        schedules_router,
        workflows_router,
        metrics_router,
    ):
        app.include_router(router, responses=guarded)
    app.include_router(dashboard_router)
    app.add_middleware(Authenticate)
    app.add_middleware(SameOrigin)
    app.add_middleware(RefuseNul)
    # Outside every route and the fast path: no one reads more than the limit.
    app.add_middleware(BodyLimit, limit=settings.max_request_body)
    # Outermost of all: every request is counted and timed, refused ones too.
    app.add_middleware(CountRequests, metrics=http_metrics)

    @app.get(
        "/healthz",
        summary="Liveness and store check",
        responses=responses(CrossOrigin, StoreError),
    )
    async def healthz() -> dict[str, str]:
        await app.state.store.list_jobs(limit=1)
        return {"status": "ok", "version": __version__}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = drop_framework_validation(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
