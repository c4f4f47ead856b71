"""Kept-alive HTTP/1.1 connections for the blocking client's submits
(client_submit.py says why): ``http.client`` on the caller's thread, the
request sent in one write, with the pool's TLS, headers and timeouts.

httpx spends more of a core per request than the server spends on a
submit (its URL handling, h11's events, a request sent in two writes),
so a submit skips it; what the caller sees is the same: an
``httpx.Response`` for an error answer, an ``httpx.TransportError`` for a
request that got none (a refused connection is ``httpx.ConnectError``,
as the CLI tells it apart). A connection found closed by the server
while idle is replaced before the request is sent, never after, so no
submit is sent twice. Where the environment names a proxy for the
server, the caller keeps to httpx (:func:`proxied`).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import urllib.request
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx


def proxied(url: str) -> bool:
    """Whether httpx would send requests for ``url`` through a proxy
    (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, unless ``NO_PROXY``)."""
    proxies = urllib.request.getproxies_environment()
    scheme, host = urlsplit(url).scheme, urlsplit(url).hostname or ""
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
    return not bypass(host, proxies)


class Answer(NamedTuple):
    """A server's answer: its status, headers and whole body."""

    status: int
    headers: list[tuple[str, str]]
    content: bytes


class Wire:
    """Idle connections to one server, taken by one request at a time
    (thread-safe: each thread's request has a connection of its own)."""

    def __init__(self, url: str, verify: ssl.SSLContext | bool, timeout: float) -> None:
        parts = urlsplit(url)
        self._url = url
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._tls else 80)
        self._context = (
            (verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify))
            if self._tls
            else None
        )
        self._timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST ``body``; the answer, read whole."""
        connection = self._take()
        try:
            head = {**headers, "content-length": str(len(body))}
            # One write: the head and the body together (http.client sends
            # a bytes body with the head).
            connection.request("POST", path, body, head)
            answer = connection.getresponse()
            content = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise httpx.ReadError(f"{exc.__class__.__name__}: {exc}") from exc
        if answer.will_close:
            connection.close()
        else:
            with self._lock:
                self._idle.append(connection)
        return Answer(answer.status, answer.getheaders(), content)

    def response(self, path: str, answer: Answer) -> httpx.Response:
        """``answer`` as httpx's response to a POST of ``path`` (what the
        client's errors are read from; built only for those, it costs more
        than the rest of a submit)."""
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            content=answer.content,
            request=httpx.Request("POST", f"{self._url}{path}"),
        )

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect()
            if _usable(connection):
                return connection
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self._context is not None:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise httpx.ConnectError(str(exc)) from exc
        sock: Any = connection.sock
        sock.setsockopt(*_NODELAY)
        sock.settimeout(None)  # as the pool's: no limit on the wait for an answer
        return connection

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _usable(connection: http.client.HTTPConnection) -> bool:
    """An idle connection the server has not closed (nothing to read on it)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
