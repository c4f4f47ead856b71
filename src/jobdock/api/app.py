"""The ASGI application: the routes, the middleware, the error table and the
lifespan that owns the store, the engines and the embedded worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from jobdock.api.access import router as access_router
from jobdock.api.agent import router as agent_router
from jobdock.api.auth import Authenticate
from jobdock.api.batch import router as batch_router
from jobdock.api.conjob import router as conjob_router
from jobdock.api.conjob_limits import RunLimits
from jobdock.api.cors import Cors
from jobdock.api.dashboard import router as dashboard_router
from jobdock.api.dispatch import router as dispatch_router
from jobdock.api.dockerjob import router as dockerjob_router
from jobdock.api.errors import GUARDED, drop_framework_validation, install_error_handlers, responses
from jobdock.api.health import router as health_router
from jobdock.api.jobs import router as jobs_router
from jobdock.api.limits import BodyLimit
from jobdock.api.machines import router as machines_router
from jobdock.api.metrics import CountRequests, HttpMetrics
from jobdock.api.metrics import router as metrics_router
from jobdock.api.nul import RefuseNul
from jobdock.api.origin import SameOrigin
from jobdock.api.rates import SubmitRates, limits_of
from jobdock.api.schedules import router as schedules_router
from jobdock.api.stdin import router as stdin_router
from jobdock.api.submit_path import DirectRoutes, direct_routes
from jobdock.api.trace import TraceId
from jobdock.api.webhooks import router as webhooks_router
from jobdock.api.workers import router as workers_router
from jobdock.api.workflows import router as workflows_router
from jobdock.dispatch import Dispatcher, FilterPool, Template, load_templates
from jobdock.engines import Engines
from jobdock.errors import CrossOrigin, StoreError
from jobdock.machines.autoscaler import Autoscaler
from jobdock.node import Node
from jobdock.settings import Settings
from jobdock.store.factory import open_store
from jobdock.submit import Policy
from jobdock.vault import Vault
from jobdock.version import __version__
from jobdock.waiting import LocalWorker, Waiting
from jobdock.worker_processes import WorkerProcesses
from jobdock.workflow_plan import WorkflowPlanner

_log = logging.getLogger(__name__)


Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

#: The routers, in order: ConJob's before dispatch's (its /job/run comes
#: before POST /job/{template}).
ROUTERS = (
    batch_router,
    jobs_router,
    stdin_router,
    workers_router,
    machines_router,
    conjob_router,
    dispatch_router,
    dockerjob_router,
    access_router,
    schedules_router,
    workflows_router,
    metrics_router,
    webhooks_router,
    agent_router,
)


def create_app(settings: Settings, *, embedded_worker: bool = True) -> FastAPI:
    """The jobdock API; its lifespan opens the store and runs a worker.
    Raises ConfigError for a bad secret key or dispatch template."""
    app = FastAPI(
        title="jobdock",
        version=__version__,
        summary="Run Linux processes as jobs.",
        lifespan=_lifespan(settings, embedded_worker),
    )
    install_error_handlers(app)
    guarded = responses(*GUARDED)
    for router in ROUTERS:
        app.include_router(router, responses=guarded)
    app.include_router(dashboard_router)
    app.include_router(health_router)
    _add_middleware(app, settings)
    _add_healthz(app)
    app.openapi = _openapi_of(app)  # type: ignore[method-assign]
    return app


def _lifespan(settings: Settings, embedded_worker: bool) -> Lifespan:
    """Open the store, the dispatcher and (``embedded_worker``) the engines
    and a node on them; close them in reverse."""
    vault = Vault.of(settings)
    templates = load_templates(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(open_store(settings))
            app.state.store = store
            app.state.settings = settings
            app.state.vault = vault
            app.state.dispatcher = await _open_dispatcher(stack, settings, templates)
            # --worker-processes: the worker runs beside this process, not in it.
            children = embedded_worker and settings.worker_processes > 0
            engines = Engines(settings) if embedded_worker and not children else None
            app.state.engines = engines
            # The one submit policy: jobs this server could not confine are
            # refused at submit where its configuration says so (unisolated:
            # refuse); a server without a worker refuses nothing for that.
            policy = Policy(settings, engines.missing if engines else None)
            app.state.policy = policy
            app.state.planner = planner = WorkflowPlanner(policy)
            app.state.waiting = Waiting(store, settings)
            app.state.conjob_limits = RunLimits.of(settings)
            if engines is not None:
                stack.push_async_callback(engines.aclose)
                node = Node(store, settings, engines, planner)
                stack.push_async_callback(node.stop)
                await node.start()
                local = LocalWorker(node.worker.id, node.worker.offers, engines.no_images)
                app.state.waiting = Waiting(store, settings, local)
            if children:
                processes = WorkerProcesses(settings)
                stack.push_async_callback(processes.stop)
                await processes.start()
            if settings.pools:
                autoscaler = Autoscaler(store, settings)
                await autoscaler.start()
                stack.push_async_callback(autoscaler.stop)
            yield

    return lifespan


async def _open_dispatcher(
    stack: AsyncExitStack, settings: Settings, templates: Mapping[str, Template]
) -> Dispatcher:
    pool = FilterPool(
        settings.dispatch_processes, settings.dispatch_timeout, settings.dispatch_max_bytes
    )
    stack.push_async_callback(pool.close)
    if templates:
        await pool.start()
    return Dispatcher(templates, pool, settings)


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The middleware, innermost first."""
    http_metrics = HttpMetrics()
    app.state.http_metrics = http_metrics
    # Innermost: POST /v1/jobs (and /batch) straight to its route's endpoint.
    direct = direct_routes([*jobs_router.routes, *batch_router.routes])
    app.add_middleware(DirectRoutes, routes=direct)
    # Inside authentication: a submit's owner is known; its body not read yet.
    # A batch's route spends the rest of its tokens from the same buckets.
    app.state.submit_limits = limits = limits_of(settings)
    app.add_middleware(SubmitRates, limits=limits)
    app.add_middleware(Authenticate)
    app.add_middleware(SameOrigin)
    app.add_middleware(RefuseNul)
    # Outside every route: no one reads more than the limit.
    app.add_middleware(BodyLimit, limit=settings.max_request_body)
    if settings.cors_origins:
        # Outside the same-origin check and authentication: a preflight
        # carries no credentials, and refusals carry CORS headers too.
        app.add_middleware(Cors, origins=settings.cors_origins)
    # Every request is counted and timed, refused ones too.
    app.add_middleware(CountRequests, metrics=http_metrics)
    # Outermost of all: every response names its trace (X-B3-TraceId).
    app.add_middleware(TraceId)


def _add_healthz(app: FastAPI) -> None:
    @app.get(
        "/healthz",
        summary="Liveness and store check",
        responses=responses(CrossOrigin, StoreError),
    )
    async def healthz() -> dict[str, str]:
        await app.state.store.list_jobs(limit=1)
        return {"status": "ok", "version": __version__}


def _openapi_of(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The app's OpenAPI document, without the framework's validation schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = drop_framework_validation(FastAPI.openapi(app))
        return app.openapi_schema

    return openapi
