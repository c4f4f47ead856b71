"""Refuse requests that a page of another site makes with the user's
ambient credentials: cross-site request forgery.

A client certificate (mutual TLS) is sent by the browser on every request to
jobdock, whoever's page asks, and a server without authentication trusts
everyone who can reach it. A form on any web page can POST to ``/v1/jobs``
(jobdock reads any body as JSON), and a cross-site ``<img>`` can GET
``/job/run``. Browsers say where a request comes from: ``Sec-Fetch-Site``
(every current browser), else ``Origin`` on a POST. So, as Go's
``net/http.CrossOriginProtection`` does, a request from another origin is
refused, except a top-level GET navigation to a page (the dashboard, the API
docs), which reads nothing the other site can see. Clients that are not
browsers (the CLI, curl, the Python client) send neither header and are not
affected; neither is the dashboard, whose requests are same-origin.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from jobdock.api.errors import send_error
from jobdock.errors import CrossOrigin

#: The scope key ``api/cors.py`` sets on a call from an origin the server
#: lists in ``cors_origins``: let through here, and authenticated by token only.
CROSS_ORIGIN = "jobdock.cross_origin"
#: Methods that change nothing (a GET that does, /job/run, is covered by
#: Sec-Fetch-Site, which browsers send on GETs too).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Sec-Fetch-Site values of requests that come from jobdock's own pages or
#: from the user (typed address, bookmark).
_TRUSTED_SITES = frozenset({"same-origin", "none"})


class SameOrigin:
    """ASGI middleware: answers 403 ``cross_origin`` to another site's request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get(CROSS_ORIGIN) and is_cross_origin(scope):
            await send_error(send, CrossOrigin())
            return
        await self.app(scope, receive, send)


def is_cross_origin(scope: Scope) -> bool:
    """Whether a browser sent this request for a page of another origin
    (a page navigation excepted, see the module's docstring)."""
    headers = _headers(scope)
    method = scope["method"]
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site in _TRUSTED_SITES:
            return False
        navigation = headers.get("sec-fetch-mode") == "navigate"
        return not (navigation and method in _SAFE_METHODS and is_page(scope["path"]))
    origin = headers.get("origin")
    if origin is None or method in _SAFE_METHODS:
        return False
    # A browser without Fetch Metadata: the origin's host must be ours.
    _, _, origin_host = origin.partition("://")
    return origin_host != headers.get("host")


def is_page(path: str) -> bool:
    """Whether ``path`` is a page a person may be linked to from elsewhere."""
    return path in ("/", "/ui", "/docs") or path.startswith("/ui/")


_WANTED = frozenset({b"sec-fetch-site", b"sec-fetch-mode", b"origin", b"host"})


def _headers(scope: Scope) -> dict[str, str]:
    return {
        bytes(key).decode(): bytes(value).decode("latin-1")
        for key, value in scope["headers"]
        if key in _WANTED
    }
