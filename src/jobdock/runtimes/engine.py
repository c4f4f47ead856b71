"""A small client of the Docker Engine API (dockerd, or podman's API service).

Only what container jobs need: images, containers, volumes, and an attach
stream. Requests go over httpx; the attach stream is a hijacked HTTP
connection read directly, so that the job's stdin can be closed (half-close)
while its output is still read.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import ssl
import struct
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from jobdock.errors import EngineError, EngineUnavailable, ImageNotFound

#: The header of a frame in a multiplexed attach stream: stream number, size.
_FRAME = struct.Struct(">BxxxL")
#: Read at most this much from the attach stream at once.
READ_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class EngineAddress:
    """Where the engine listens: a unix socket, or tcp (with TLS if given)."""

    url: str
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_verify: bool = True

    def ssl_context(self) -> ssl.SSLContext | None:
        if urlsplit(self.url).scheme != "tcp" or not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tls_cert:
            context.load_cert_chain(str(self.tls_cert), str(self.tls_key or self.tls_cert))
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _parse_address(address: EngineAddress) -> tuple[str | None, str, int]:
    """(unix socket path or None, host, port) from a DOCKER_HOST-style URL."""
    parts = urlsplit(address.url)
    if parts.scheme == "unix":
        return parts.path, "docker", 80
    if parts.scheme in ("tcp", "http", "https"):
        if not parts.hostname:
            raise EngineError(f"no host in the engine address {address.url!r}")
        return None, parts.hostname, parts.port or (2376 if address.ssl_context() else 2375)
    raise EngineError(
        f"unsupported engine address {address.url!r} (use unix:///path or tcp://host:port)"
    )


class Engine:
    """One connection pool to one engine. Use as ``async with Engine(...)``."""

    def __init__(self, address: EngineAddress) -> None:
        self.address = address
        self._socket, self._host, self._port = _parse_address(address)
        self._ssl = address.ssl_context()
        scheme = "https" if self._ssl else "http"
        transport = httpx.AsyncHTTPTransport(
            uds=self._socket, verify=self._ssl if self._ssl else False
        )
        self._http = httpx.AsyncClient(
            transport=transport,
            base_url=f"{scheme}://{self._host}:{self._port}",
            timeout=httpx.Timeout(30.0, connect=5.0),
        )

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # -- plumbing ---------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 30.0,
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method,
                path,
                params=params,
                json=body,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=5.0),
            )
        except (httpx.TransportError, OSError) as exc:
            raise EngineUnavailable(
                f"the container engine at {self.address.url} is unreachable: {exc or type(exc).__name__}"
            ) from None
        if response.status_code >= 400:
            raise EngineError(_engine_message(response), status=response.status_code)
        return response

    async def ping(self) -> None:
        """Raise EngineUnavailable unless the engine answers."""
        await self._request("GET", "/_ping", timeout=5.0)

    async def remaps_users(self) -> bool:
        """Whether the engine runs containers in a user namespace of its own
        (dockerd's userns-remap, rootless engines): its SecurityOptions."""
        info = (await self._request("GET", "/info", timeout=10.0)).json()
        options = info.get("SecurityOptions") or []
        return any("name=userns" in option or "name=rootless" in option for option in options)

    # -- images -----------------------------------------------------------------

    async def image_exists(self, image: str) -> bool:
        try:
            await self._request("GET", f"/images/{quote(image, safe='/:@')}/json")
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def image_inspect(self, image: str) -> dict[str, Any]:
        """The engine's record of ``image`` (a reference or an id): its Id,
        RepoDigests and Config."""
        response = await self._request("GET", f"/images/{quote(image, safe='/:@')}/json")
        result: dict[str, Any] = response.json()
        return result

    async def pull(self, image: str, auth: Mapping[str, str] | None = None) -> None:
        """Pull ``image``; raises ImageNotFound when the registry refuses it."""
        name, _, tag = _split_reference(image)
        headers = {}
        if auth:
            encoded = base64.urlsafe_b64encode(json.dumps(dict(auth)).encode()).decode()
            headers["X-Registry-Auth"] = encoded
        params = {"fromImage": name, "tag": tag} if tag else {"fromImage": name}
        try:
            response = await self._request(
                "POST", "/images/create", params=params, headers=headers, timeout=None
            )
        except EngineError as exc:
            if exc.status in (401, 403, 404, 500):
                raise ImageNotFound(image, exc.message) from None
            raise
        # Progress is streamed as JSON lines; a failure is reported in-band.
        for line in response.text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("error"):
                raise ImageNotFound(image, str(event["error"]))

    # -- containers -------------------------------------------------------------

    async def create(self, config: Mapping[str, Any], name: str | None = None) -> str:
        params = {"name": name} if name else None
        try:
            response = await self._request("POST", "/containers/create", params=params, body=config)
        except EngineError as exc:
            if exc.status == 404:
                raise ImageNotFound(str(config.get("Image")), exc.message) from None
            raise
        return str(response.json()["Id"])

    async def start(self, container: str) -> None:
        await self._request("POST", f"/containers/{container}/start")

    async def inspect(self, container: str) -> dict[str, Any]:
        response = await self._request("GET", f"/containers/{container}/json")
        result: dict[str, Any] = response.json()
        return result

    async def wait(self, container: str) -> None:
        await self._request(
            "POST",
            f"/containers/{container}/wait",
            params={"condition": "not-running"},
            timeout=None,
        )

    async def stop(self, container: str, grace: float) -> None:
        await self._request(
            "POST",
            f"/containers/{container}/stop",
            params={"t": max(0, round(grace))},
            timeout=grace + 30.0,
        )

    async def kill(self, container: str, signal: str = "SIGKILL") -> None:
        await self._request("POST", f"/containers/{container}/kill", params={"signal": signal})

    async def remove(self, container: str) -> None:
        try:
            await self._request(
                "DELETE", f"/containers/{container}", params={"force": "true", "v": "true"}
            )
        except EngineError as exc:
            if exc.status != 404:
                raise

    async def remove_image(self, image: str) -> bool:
        """Remove ``image`` unless a container (running or not) uses it:
        never forced. Whether it was removed."""
        try:
            await self._request("DELETE", f"/images/{quote(image, safe='/:@')}")
        except EngineError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """All containers (running or not) carrying every label given."""
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        response = await self._request(
            "GET", "/containers/json", params={"all": "true", "filters": filters}
        )
        result: list[dict[str, Any]] = response.json()
        return result

    async def events(
        self, since: float, until: float, filters: Mapping[str, list[str]]
    ) -> list[dict[str, Any]]:
        """The engine's events between ``since`` and ``until`` (epoch
        seconds, the engine's clock) that match ``filters``: a query of the
        past, answered at once (``until`` must not be in the engine's future)."""
        params = {"since": f"{since:.9f}", "until": f"{until:.9f}", "filters": json.dumps(filters)}
        response = await self._request("GET", "/events", params=params)
        events = []
        for line in response.text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events

    async def clock(self) -> float:
        """The engine's time now (epoch seconds): its ``/info`` SystemTime."""
        info = (await self._request("GET", "/info", timeout=10.0)).json()
        return _epoch(str(info.get("SystemTime") or ""))

    # -- volumes ----------------------------------------------------------------

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        await self._request("POST", "/volumes/create", body={"Name": name, "Labels": dict(labels)})

    async def volumes(self, labels: Mapping[str, str]) -> list[str]:
        filters = json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})
        response = await self._request("GET", "/volumes", params={"filters": filters})
        return [v["Name"] for v in response.json().get("Volumes") or []]

    async def remove_volume(self, name: str) -> None:
        try:
            await self._request("DELETE", f"/volumes/{name}", params={"force": "true"})
        except EngineError as exc:
            if exc.status != 404:
                raise

    # -- attach -----------------------------------------------------------------

    async def attach(self, container: str, stdin: bool) -> AttachStream:
        """Attach to the container's stdout and stderr (and stdin): call before
        start to see every byte of its output."""
        query = urlencode({"stream": 1, "stdout": 1, "stderr": 1, "stdin": int(stdin)})
        try:
            if self._socket is not None:
                reader, writer = await asyncio.open_unix_connection(self._socket)
            else:
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._ssl
                )
        except OSError as exc:
            raise EngineUnavailable(
                f"the container engine at {self.address.url} is unreachable: {exc}"
            ) from None
        request = (
            f"POST /containers/{container}/attach?{query} HTTP/1.1\r\n"
            f"Host: {self._host}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        writer.write(request.encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
            writer.close()
            raise EngineError(f"cannot attach to container {container[:12]}: {exc}") from None
        status = head.split(b" ", 2)
        if len(status) < 2 or status[1] not in (b"101", b"200"):
            writer.close()
            raise EngineError(
                f"cannot attach to container {container[:12]}: "
                f"{head.splitlines()[0].decode(errors='replace')}"
            )
        return AttachStream(reader, writer)


class AttachStream:
    """The multiplexed stdout/stderr of a container (and its stdin)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = bytearray()

    async def write_stdin(self, data: bytes | AsyncIterable[bytes]) -> None:
        """Send ``data`` (or each of its pieces, once the engine has taken
        the one before) to the container's stdin, then close it (EOF)."""
        try:
            if isinstance(data, bytes):
                data = _once(data)
            async for piece in data:
                if piece:
                    self._writer.write(piece)
                    await self._writer.drain()
            if self._writer.can_write_eof():
                self._writer.write_eof()
        except (ConnectionError, OSError):
            # The container stopped reading (or exited): like a closed pipe.
            pass

    async def read(self) -> list[tuple[int, bytes]] | None:
        """The next frames as (stream number, data); None at the end."""
        while True:
            frames = self._frames()
            if frames:
                return frames
            try:
                data = await self._reader.read(READ_SIZE)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                return None
            self._buffer += data

    def _frames(self) -> list[tuple[int, bytes]]:
        frames = []
        buffer, pos = self._buffer, 0
        while len(buffer) - pos >= _FRAME.size:
            number, size = _FRAME.unpack_from(buffer, pos)
            end = pos + _FRAME.size + size
            if len(buffer) < end:
                break
            frames.append((number, bytes(buffer[pos + _FRAME.size : end])))
            pos = end
        del buffer[:pos]
        return frames

    def close(self) -> None:
        self._writer.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _engine_message(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except ValueError:
        message = None
    return str(message or response.text.strip() or f"HTTP {response.status_code}")


def _epoch(stamp: str) -> float:
    """Epoch seconds of an RFC 3339 time with nanoseconds (the engine's)."""
    head, dot, rest = stamp.partition(".")
    if dot:
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        zone = rest[len(digits) :]
        stamp, fraction = head + zone, float(f"0.{digits or 0}")
    else:
        fraction = 0.0
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise EngineError(f"the engine's clock is not a time: {stamp!r}") from None
    return parsed.timestamp() + fraction


def _split_reference(image: str) -> tuple[str, str, str]:
    """(name, ':' or '@', tag or digest) of an image reference."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, "@", digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], ":", image[colon + 1 :]
    return image, "", ""
