"""The client's submit, made cheap (issue 17: ``Client.submit`` was 2.5x
slower than a bare kept-alive HTTP connection).

What the profile and the bench (bench/client_submit.py) showed, and what
is done about each:

- Nagle's algorithm: httpx writes a request's head and body in two sends,
  and the second waited for the server's delayed ACK. Every connection of
  the client sets ``TCP_NODELAY`` (:data:`SOCKET_OPTIONS`), as asyncio
  does for its own sockets and as http.client avoids by sending once.
- The blocking :class:`~jobdock.Client` ran each submit on its event loop
  thread: two thread hand-offs per call, each a wait for a core on a busy
  machine, and httpx's own work per request (more than the server's per
  submit). Its submits now go on the caller's thread over kept-alive
  ``http.client`` connections of their own (:class:`BlockingSubmits`,
  client_wire.py), made on first use with the same URL, headers, timeout
  and TLS as the async client's.
- The request is encoded once by pydantic (``model_dump_json``), with the
  headers built once per client; the blocking client's answer is parsed
  once, straight into the handle (``JobHandle.read``), not into a Job that
  a handle is then copied from.

Both clients use :func:`submit_body` and :func:`submitted_job`, so what a
submit sends and how its answer is read are written once; only the I/O
(blocking or async) differs. Imports the foundation and the client's
errors.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from jobdock.client_bodies import SpecLike, as_spec
from jobdock.client_errors import error_of, unreachable
from jobdock.client_wire import Wire, proxied
from jobdock.models import Job

#: Every connection of the client: no Nagle delay between a request's head and body.
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
#: The submit's own headers (the client's, its token among them, come with its pool).
JSON = {"content-type": "application/json"}
PATH = "/v1/jobs"


def submit_body(spec: SpecLike) -> bytes:
    """A submit's JSON body: the spec, checked, without its defaults; raises
    InvalidSpec naming the bad field."""
    return as_spec(spec).model_dump_json(exclude_defaults=True).encode()


def submitted_job(response: httpx.Response) -> Job:
    """The job a submit's answer holds; raises the client's error for an error."""
    if response.status_code >= 400:
        raise error_of(response)
    return Job.model_validate_json(response.content)


def pool_options(url: str, verify: Any, timeout: float, headers: dict[str, str]) -> dict[str, Any]:
    """The arguments of an httpx client (blocking or async) of the server at ``url``."""
    return {
        "base_url": url,
        "timeout": httpx.Timeout(timeout, read=None),
        "headers": headers,
        "verify": verify,
    }


class BlockingSubmits:
    """The blocking client's submits, on the caller's thread: over kept-alive
    ``http.client`` connections (client_wire.py), or an httpx pool where
    the environment names a proxy for the server. Made on first use (a CLI
    that never submits builds no TLS context for it); closed with the client."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._headers = {**options["headers"], **JSON}
        self._way: Wire | httpx.Client | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> Wire | httpx.Client:
        way = self._way
        if way is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the client is closed")
                if self._way is None:
                    self._way = self._made()
                way = self._way
        return way

    def _made(self) -> Wire | httpx.Client:
        options = self._options
        if not proxied(self._url):
            return Wire(self._url, options["verify"], options["timeout"].connect)
        transport = httpx.HTTPTransport(verify=options["verify"], socket_options=SOCKET_OPTIONS)
        return httpx.Client(**options, transport=transport)

    def submit(self, spec: SpecLike) -> bytes:
        """Submit a job; the JSON of its record (state ``queued``), for the
        caller to read once into what it returns (a handle)."""
        body = submit_body(spec)
        way = self._open()
        try:
            if not isinstance(way, Wire):
                response = way.post(PATH, content=body, headers=JSON)
                if response.status_code >= 400:
                    raise error_of(response)
                return response.content
            answer = way.post(PATH, body, self._headers)
        except httpx.TransportError as exc:
            raise unreachable(self._url, exc) from None
        if answer.status >= 400:
            raise error_of(way.response(PATH, answer))
        return answer.content

    def closing(self, aclose: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``aclose`` (the async client's), closing these connections first."""

        async def close_both() -> None:
            try:
                self.close()
            finally:
                await aclose()

        return close_both

    def close(self) -> None:
        """Close the connections (a later submit raises)."""
        with self._lock:
            self._closed = True
            way, self._way = self._way, None
        if way is not None:
            way.close()
