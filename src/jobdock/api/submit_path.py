"""``POST /v1/jobs`` without the framework's per-request machinery.

Submitting is the one request every job makes, and FastAPI's routing,
dependency solving and response wrapping cost three times what jobdock
itself spends on a submit (measured with py-spy under bench/bench_core.py).
This ASGI middleware answers that one route directly, with the same parsing,
policy, store call and error rendering as every other route; the FastAPI
route stays for the OpenAPI document and answers only if this middleware is
not installed. It sits inside the app's outermost error middleware, so an
unexpected failure still becomes a JSON 500, and any middleware added around
the app (authentication, say) applies to it as to every route.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobdock.api.errors import render_error
from jobdock.errors import JobdockError
from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.submit import parse_spec, submit

PATH = "/v1/jobs"
_JSON = [(b"content-type", b"application/json")]


class SubmitPath:
    """ASGI middleware that serves ``POST /v1/jobs`` itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        store: Store = state.store
        settings: Settings = state.settings
        try:
            spec = parse_spec(await _body(receive))
            job = await submit(store, spec, settings, missing=getattr(state, "missing", None))
            status, payload = 201, job.model_dump_json().encode()
        except JobdockError as exc:
            status, body = render_error(exc)
            payload = json.dumps(body).encode()
        headers = [*_JSON, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _body(receive: Receive) -> bytes:
    parts = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)
