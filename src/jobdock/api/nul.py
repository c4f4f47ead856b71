"""Refuse a NUL byte in a request's path or query: no id, name or filter
holds one, and PostgreSQL's text cannot take one (the driver raises, and
the request answered 500 instead of the 404 or empty list it deserves)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from jobdock.api.errors import send_error
from jobdock.errors import InvalidRequest


class RefuseNul:
    """ASGI middleware: answers 422 ``invalid_request`` naming the parameter
    (or ``path``) that holds a NUL byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = nul_field(scope)
            if field is not None:
                await send_error(
                    send, InvalidRequest(f"{field}: must not contain NUL bytes", field=field)
                )
                return
        await self.app(scope, receive, send)


def nul_field(scope: Scope) -> str | None:
    """The parameter of the request (``path`` for its path) holding a NUL byte."""
    if "\0" in scope.get("path", ""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query.lower() and b"\0" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\0" in name or "\0" in value:
            return name.replace("\0", "") or "query"
    return None
