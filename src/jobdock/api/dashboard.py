"""``/ui``: the web dashboard, static files shipped in the package
(``jobdock/web/``) that call the JSON API from the browser.

The pages carry no data and need no credentials: every job, log and action
goes through ``/v1`` with the user's token (kept in the tab's
sessionStorage and sent as ``Authorization: Bearer``) or client certificate,
so the page can do nothing the API would refuse. Every answer under ``/ui``
forbids inline script, other origins' resources and framing.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

router = APIRouter(include_in_schema=False)

#: The one page every dashboard path answers; its script routes by path.
SHELL = "index.html"
#: A static file's name: no directories, a known type.
_ASSET_NAME = re.compile(r"[a-z0-9_-]+\.(js|css|svg)")
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
#: Scripts and styles from jobdock only, requests to jobdock only, no
#: framing, no form posting anywhere (forms are sent by script).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-cache",
}


def _not_found() -> Response:
    return Response(b"not found\n", 404, SECURITY_HEADERS, media_type="text/plain")


@lru_cache(maxsize=64)
def _read(name: str) -> bytes | None:
    asset = files("jobdock").joinpath("web", name)
    return asset.read_bytes() if asset.is_file() else None


def _answer(name: str) -> Response:
    body = _read(name)
    if body is None:
        return _not_found()
    media_type = _TYPES[name.rpartition(".")[2]]
    return Response(body, 200, SECURITY_HEADERS, media_type=media_type)


@router.get("/")
async def root() -> RedirectResponse:
    """The dashboard is the server's front page."""
    return RedirectResponse("/ui")


@router.get("/ui/static/{name}")
async def asset(name: str) -> Response:
    """A script, style sheet or image of the dashboard."""
    return _answer(name) if _ASSET_NAME.fullmatch(name) else _not_found()


@router.get("/ui")
@router.get("/ui/{page:path}")
async def page(page: str = "") -> Response:
    """Any dashboard page: the shell, whose script renders the page."""
    return _answer(SHELL)
