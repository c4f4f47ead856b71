"""Every request's trace id: the caller's ``X-B3-TraceId`` (echoed), else a
new 16-hex one, answered in every response's ``X-B3-TraceId`` header, held
while the request is served (its log lines carry it, a job it creates
stores it: correlation.py) and, with traces on, the id of the request's
span (tracing.py, which continues a caller's W3C ``traceparent`` too)."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobdock import tracing
from jobdock.correlation import TraceIds, b3_from, in_trace, parse_traceparent

HEADER = "X-B3-TraceId"


class TraceId:
    """ASGI middleware: gives each HTTP request its trace id and span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        traceparent = headers.get("traceparent")
        if parse_traceparent(traceparent) is None:
            traceparent = None
        ids = TraceIds(b3_from(headers.get(HEADER), traceparent), traceparent)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = ids.b3
            await send(message)

        method = scope.get("method", "GET")
        with (
            in_trace(ids),
            tracing.request_span(
                f"{method} {_route_of(scope.get('path', '/'))}",
                traceparent,
                **{"http.request.method": method, "url.path": scope.get("path", "/")},
            ),
        ):
            await self.app(scope, receive, send_with_id)


def _route_of(path: str) -> str:
    """The path with its ids left out, as a span's name (few distinct names)."""
    parts = path.split("/")
    return "/".join(parts[:3]) + ("/..." if len(parts) > 3 else "")
