"""``POST /v1/jobs``'s one route, served without the framework's per-request
machinery.

Submitting is the one request every job makes, and FastAPI's routing,
dependency solving, body validation and response wrapping cost more than
jobdock itself spends on a submit (measured with py-spy and cProfile under
bench/bench_core.py). So the route is a :class:`DirectRoute`: an ordinary
route for the router and the OpenAPI document (its path, summary, body and
responses are its declaration's, in api/jobs.py), whose endpoint takes the
Request and returns the Response itself (reading and checking the body is
the endpoint's, ``create_job``). :class:`DirectRoutes`, the innermost
middleware, hands a request for such a route straight to that same
endpoint, before FastAPI's router; errors are rendered by the app's own
handler for a JobdockError, and every other middleware applies as to every
route (the job's owner is the principal ``api/auth.py`` resolved). Without
the middleware the router serves the route the same way, a little slower.

Imports the API's error handling and the foundation.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from jobdock.api.errors import jobdock_error
from jobdock.errors import JobdockError

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint is called with the request, no more."""

    def get_route_handler(self) -> Endpoint:
        endpoint: Endpoint = self.endpoint
        return endpoint


class DirectRoutes:
    """ASGI middleware that calls a DirectRoute's endpoint for its requests
    (exact path and method; such a route has no path parameters)."""

    def __init__(self, app: ASGIApp, routes: Iterable[DirectRoute]) -> None:
        self.app = app
        self._routes = {
            (method, route.path): route for route in routes for method in route.methods or ()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http":
            route = self._routes.get((scope["method"], scope["path"]))
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # as the router would: metrics label by it
        request = Request(scope, receive, send)
        endpoint: Endpoint = route.endpoint
        try:
            response = await endpoint(request)
        except JobdockError as exc:
            response = await jobdock_error(request, exc)
        await response(scope, receive, send)


def direct_routes(routes: Iterable[Any]) -> list[DirectRoute]:
    """The DirectRoutes among ``routes``."""
    return [route for route in routes if isinstance(route, DirectRoute)]
