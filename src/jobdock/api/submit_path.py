"""``POST /v1/jobs`` without the framework's per-request machinery.

Submitting is the one request every job makes, and FastAPI's routing,
dependency solving and response wrapping cost three times what jobdock
itself spends on a submit (measured with py-spy under bench/bench_core.py).
This ASGI middleware answers that one route directly, with the same parsing,
policy, store call and error rendering as every other route; the FastAPI
route stays for the OpenAPI document and answers only if this middleware is
not installed. It sits inside the app's outermost error middleware, so an
unexpected failure still becomes a JSON 500, and any middleware added around
the app applies to it as to every route: the job's owner is the principal
that ``api/auth.py``'s middleware, outside this one, resolved.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobdock.api.auth import principal_of
from jobdock.api.context import missing_of
from jobdock.api.errors import headers_of, render_error, send_json
from jobdock.errors import JobdockError
from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.submit import parse_spec, submit_job

PATH = "/v1/jobs"


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
        extra: dict[str, str] = {}
        try:
            owner = principal_of(scope).name
            spec = parse_spec(await _body(receive))
            submitted = await submit_job(store, spec, settings, owner, missing=missing_of(state))
            status = 201 if submitted.created else 200
            payload = submitted.job.model_dump_json().encode()
        except JobdockError as exc:
            status, body = render_error(exc)
            payload = json.dumps(body).encode()
            extra = headers_of(exc)
        await send_json(send, status, payload, extra)


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
