"""``GET /metrics`` for Prometheus (docs/metrics.md), and the middleware
that counts and times HTTP requests.

Job and worker metrics are read from the store at each scrape
(``jobdock/metrics.py``); HTTP metrics are this process's own, kept in
memory (they start from zero when the server does, as Prometheus expects of
a process's counters). With authentication on, ``/metrics`` answers admins
and a request bearing the ``metrics_token`` setting, so that Prometheus
need not hold an admin's token.
"""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobdock.api.auth import PRINCIPAL
from jobdock.api.context import settings_of, store_of
from jobdock.api.errors import responses
from jobdock.api.workers import LISTED_SECONDS
from jobdock.auth import Principal
from jobdock.errors import Forbidden, Unauthenticated
from jobdock.machines.metrics import MachineMetrics
from jobdock.metrics import Collectors, Snapshot

PATH = "/metrics"

router = APIRouter()


class HttpMetrics:
    """The HTTP metrics of one app: a registry with the request counter and
    latency histogram, and this process's own metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "jobdock_http_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jobdock_http_request_duration_seconds",
            "Time to answer a request, to its last byte (a followed log or a "
            "wait lasts as long as it follows or waits).",
            ["method", "route"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)


def _route(scope: Scope) -> str:
    """The route's template (``/v1/jobs/{job_id}``), so that ids do not
    become labels; requests no route matched are ``other``."""
    route = scope.get("route")
    if isinstance(route, Route):
        return route.path
    return "other"


class CountRequests:
    """ASGI middleware: counts and times every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method, route = scope["method"], _route(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)


def _check_access(request: Request) -> None:
    settings = settings_of(request)
    if not settings.auth_enabled:
        return
    who = request.scope.get(PRINCIPAL)
    if isinstance(who, Principal):
        if who.admin:
            return
        raise Forbidden("only an administrator or the metrics_token may read /metrics")
    token = settings.metrics_token
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if (
        token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())
    ):
        return
    raise Unauthenticated("an admin's API token or the metrics_token is required")


@router.get(
    PATH,
    summary="Metrics for Prometheus",
    response_class=Response,
    tags=["metrics"],
    responses={
        200: {
            "description": "The metrics.",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        },
        **responses(Forbidden),
    },
)
async def metrics(request: Request) -> Response:
    """Job, worker, machine and HTTP metrics in Prometheus' text format, or
    OpenMetrics when the Accept header asks for it."""
    _check_access(request)
    settings = settings_of(request)
    store = store_of(request)
    now = time.time()
    counts = await store.metrics(settings.metrics_job_labels)
    workers = await store.list_workers(now - LISTED_SECONDS, now - settings.lease_seconds)
    http: HttpMetrics = request.app.state.http_metrics
    snapshot = Snapshot(counts, workers, settings.metrics_job_labels, now, settings.namespace)
    pools = [pool.name for pool in settings.pools]
    # Every machine the store holds: the boot times and machine-seconds are over them all.
    held = await store.list_machines(since=0.0) if pools else []
    machines = MachineMetrics(pools, held, now)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encoder(Collectors(snapshot, machines, http.registry))
    return Response(body, headers={"content-type": content_type})
