"""Cross-origin resource sharing: pages of the origins in ``cors_origins``
may call the API from a browser (ConJob answers every origin; pages such
as metadiff's call its ``/job/run`` from their own site).

Off by default: with no origin listed, nothing here changes a request or an
answer, and ``api/origin.py`` refuses every cross-origin call. For a listed
origin (or any, with ``*``):

- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is
  answered 204 here, before authentication (browsers send no credentials
  on it), allowing the API's methods and the headers a client sends
  (``Authorization`` among them);
- every answer to that origin carries ``Access-Control-Allow-Origin`` (and
  exposes ``X-Jobdock-Job-Id``), but never
  ``Access-Control-Allow-Credentials``;
- the request is marked cross-origin (:data:`CROSS_ORIGIN`) so that
  ``api/origin.py`` lets it through and ``api/auth.py`` ignores the
  ambient credential a browser adds by itself (a client certificate): such
  a call must carry an API token, which only a page its user gave it to
  holds. The dashboard's pages get no CORS headers and its own calls stay
  same-origin.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobdock.api.origin import CROSS_ORIGIN, is_page

_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
#: Headers a page may send (a preflight asking for others is answered
#: without them, and the browser then refuses the call).
_ALLOWED_HEADERS = frozenset(
    {"authorization", "content-type", "accept", "idempotency-key", "x-b3-traceid"}
)
_EXPOSED = "X-Jobdock-Job-Id, X-B3-TraceId, Retry-After"
_MAX_AGE = "600"


class Cors:
    """ASGI middleware: CORS for the configured origins (see the module)."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = self._allowed_origin(scope) if scope["type"] == "http" else None
        if origin is None:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await _preflight(send, origin, headers.get("access-control-request-headers", ""))
            return
        scope[CROSS_ORIGIN] = True

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response = MutableHeaders(scope=message)
                response["Access-Control-Allow-Origin"] = origin
                response["Access-Control-Expose-Headers"] = _EXPOSED
                response.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _allowed_origin(self, scope: Scope) -> str | None:
        """The Access-Control-Allow-Origin value for this request, or None
        when it is not a cross-origin call from a listed origin."""
        if not self.origins or is_page(scope["path"]):
            return None
        headers = _headers(scope)
        origin = headers.get("origin")
        if origin is None or origin.partition("://")[2] == headers.get("host"):
            return None
        if origin in self.origins:
            return origin
        return "*" if "*" in self.origins else None


async def _preflight(send: Send, origin: str, requested: str) -> None:
    wanted = [h.strip() for h in requested.split(",") if h.strip()]
    allowed = ", ".join(h for h in wanted if h.lower() in _ALLOWED_HEADERS)
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", _METHODS.encode()),
        (b"access-control-max-age", _MAX_AGE.encode()),
        (b"vary", b"Origin"),
    ]
    if allowed:
        headers.append((b"access-control-allow-headers", allowed.encode("latin-1")))
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _headers(scope: Scope) -> dict[str, str]:
    return {
        bytes(key).decode(): bytes(value).decode("latin-1")
        for key, value in scope["headers"]
        if key in (b"origin", b"host", b"access-control-request-method")
        or key == b"access-control-request-headers"
    }
