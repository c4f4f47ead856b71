"""Limits on requests, so that no client can take the server's memory or
connections from everyone else (docs/security.md, "Limits on requests").

- :class:`BodyLimit`, ASGI middleware around every route (the submit fast
  path too): a body over ``max_request_body`` is answered 413 and not read
  any further. A declared ``Content-Length`` over it is refused before a
  byte of the body is read (and before ``100 Continue``); a chunked body is
  counted as it arrives and cut off at the limit. The connection is then
  closed, so the rest of the body is never read. A job's streamed stdin
  (api/stdin.py) is not held in memory, and has a limit of its own.
- :class:`HeaderDeadline`, uvicorn's httptools protocol with a deadline on
  each request's head: a connection that has not sent a complete head
  within ``header_timeout`` of opening (or of its request's first byte, on
  a kept-alive connection) is closed, with a 408 if a request had begun.
  uvicorn itself only times out idle kept-alive connections, so 50 clients
  sending their headers a byte at a time held 50 connections forever.

The number of connections is bounded by uvicorn's ``limit_concurrency``
(``max_connections``; see ``jobdock serve`` in cli/server.py).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jobdock.api.errors import render_error, send_json
from jobdock.api.stdin import PATH as STDIN_PATH
from jobdock.errors import HeaderTimeout, JobdockError, RequestTooLarge

#: Sent with every refusal here: the rest of the request is not read.
_CLOSE = {"connection": "close"}


class _CutOff(Exception):
    """Raised to the app by ``receive`` once the body passed the limit."""


class BodyLimit:
    """ASGI middleware answering 413 to a request body over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _streamed(scope):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _refuse(send, RequestTooLarge(self.limit))
            return
        received = 0
        cut_off = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, cut_off
            if cut_off:
                raise _CutOff
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    cut_off = True
                    raise _CutOff
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if cut_off and not started:
                # The app's answer to the body it could not read: ours instead.
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Whatever the app made of the cut-off (a route's 400 or 500, or
            # _CutOff itself) is not what happened.
            if not cut_off:
                raise
        if cut_off and not started:
            await _refuse(send, RequestTooLarge(self.limit))


def _streamed(scope: Scope) -> bool:
    """A job's streamed stdin, which its route bounds (``max_stdin_stream``)
    and stores as it arrives."""
    return scope["method"] == "POST" and STDIN_PATH.fullmatch(scope["path"]) is not None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # httptools refuses such a request before here
    return None


async def _refuse(send: Send, exc: JobdockError) -> None:
    status, body = render_error(exc)
    await send_json(send, status, json.dumps(body).encode(), _CLOSE)


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request head
    does not arrive within ``header_timeout`` seconds."""

    #: Set per server by :meth:`with_timeout`.
    header_timeout: float = 10.0
    _deadline: asyncio.TimerHandle | None = None
    _begun = False

    @classmethod
    def with_timeout(cls, seconds: float) -> type[HeaderDeadline]:
        """This protocol with a deadline of ``seconds`` (uvicorn makes one
        instance per connection from the class it is given)."""
        return type(cls.__name__, (cls,), {"header_timeout": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._begun = False
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._begun:
            self.transport.write(_raw_response(HeaderTimeout(self.header_timeout)))
        self.transport.close()


def _raw_response(exc: JobdockError) -> bytes:
    """``exc`` as a complete HTTP/1.1 response that closes the connection,
    for the protocol, which has no ASGI ``send`` to answer with."""
    status, body = render_error(exc)
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + payload
