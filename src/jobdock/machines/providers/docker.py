"""The ``docker`` provider: a machine is a container running ``jobdock
agent`` on a Docker Engine (local, or remote over ``tcp://`` with TLS),
through jobdock's own engine client (``runtimes/engine.py``).

A machine's container carries labels naming the pool, the server and the
machine (``io.jobdock.machine-pool``, ``io.jobdock.machine-server``,
``io.jobdock.machine``); ``machines()`` lists by them, so the provider finds
its containers again after a server restart. Stopping is ``stop`` (SIGTERM,
then the pool's ``stop_grace``) and remove. An interruption is a container of
the pool that someone else stopped (``docker stop``, a daemon shutdown): the
engine's ``kill`` event with SIGTERM, read from its event log since the last
call (one request, answered at once; docs/machines.md).
"""

from __future__ import annotations

import contextlib
import re
import signal
import ssl
from pathlib import Path
from typing import Any

from jobdock.errors import EngineError, ImageNotFound
from jobdock.machines.provider import (
    Interruption,
    MachineLaunch,
    Provider,
    ProviderError,
    ProviderMachine,
    ProviderState,
)
from jobdock.pool_settings import DockerPool, PoolSettings
from jobdock.runtimes.engine import Engine, EngineAddress

LABEL_POOL = "io.jobdock.machine-pool"
LABEL_SERVER = "io.jobdock.machine-server"
LABEL_MACHINE = "io.jobdock.machine"
#: The engine's container states, as a provider's.
_STATES: dict[str, ProviderState] = {
    "created": "pending",
    "running": "running",
    "restarting": "running",
    "paused": "running",
    "removing": "stopping",
    "exited": "stopped",
    "dead": "stopped",
}
#: What a container's name may hold (the engine's rule).
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class DockerProvider:
    """The containers of one pool on one engine."""

    def __init__(self, pool: str, settings: DockerPool, engine: Engine, server: str | None) -> None:
        self.pool = pool
        self.settings = settings
        #: The engine the machines run on.
        self.address = engine.address
        self._engine = engine
        #: The server's tag: given, or learned from the first launch.
        self._server = server
        #: Containers this provider is stopping: their SIGTERM is no interruption.
        self._stopping: set[str] = set()
        #: Those whose stop has returned: forgotten once a look covered it.
        self._stopped: set[str] = set()
        #: The engine's clock at the last look at its events (None: not yet).
        self._seen_until: float | None = None
        #: The events of the last look (the next one may see its last again).
        self._seen: set[tuple[str, int]] = set()

    async def start(self, launch: MachineLaunch) -> str:
        """Create and start the machine's container; its id."""
        if self._server is None:
            self._server = launch.tags.get("jobdock-server")
        config = self._container_config(launch)
        name = "jobdock-" + _NAME_UNSAFE.sub("-", launch.machine_id)
        try:
            if not await self._engine.image_exists(self.settings.image):
                await self._engine.pull(self.settings.image)
            container = await self._engine.create(config, name=name)
        except EngineError as exc:
            if exc.status != 409:
                raise self._error("cannot create a machine", exc) from None
            # A retried start of the same machine: its container, not a second one.
            container = await self._existing(name, launch.machine_id, exc)
        except ImageNotFound as exc:
            raise self._error("cannot create a machine", exc) from None
        try:
            await self._engine.start(container)
        except EngineError as exc:
            await self._remove_quietly(container)
            raise self._error("cannot start a machine", exc) from None
        return container

    async def _existing(self, name: str, machine_id: str, conflict: EngineError) -> str:
        """The id of the container ``name`` if it is this machine's."""
        try:
            found = await self._engine.inspect(name)
        except EngineError:
            raise self._error("cannot create a machine", conflict) from None
        labels = (found.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_MACHINE) != machine_id or labels.get(LABEL_POOL) != self.pool:
            raise self._error("cannot create a machine", conflict)
        return str(found["Id"])

    def _container_config(self, launch: MachineLaunch) -> dict[str, Any]:
        settings = self.settings
        labels = {
            LABEL_POOL: self.pool,
            LABEL_MACHINE: launch.machine_id,
            LABEL_SERVER: launch.tags.get("jobdock-server", self._server or ""),
        }
        host: dict[str, Any] = {
            "Binds": [_read_only(mount) for mount in settings.mounts],
            "Privileged": settings.privileged,
            "Init": settings.init,
        }
        if settings.network:
            host["NetworkMode"] = settings.network
        return {
            "Image": settings.image,
            "Cmd": [*settings.agent_command, *launch.agent_args],
            # The token is in the container's environment: whoever can
            # inspect containers on this engine can read it (docs/machines.md).
            "Env": [f"{key}={value}" for key, value in launch.agent_env.items()],
            "Labels": labels,
            "HostConfig": host,
        }

    async def stop(self, provider_id: str) -> None:
        """Stop (SIGTERM, then SIGKILL after ``stop_grace``) and remove the
        container; one already gone is no error."""
        self._stopping.add(provider_id)
        try:
            await self._engine.stop(provider_id, self.settings.stop_grace)
            await self._engine.remove(provider_id)
        except EngineError as exc:
            if exc.status not in (304, 404):
                raise self._error(f"cannot stop machine {provider_id[:12]}", exc) from None
            await self._remove_quietly(provider_id)
        finally:
            self._stopped.add(provider_id)

    async def machines(self) -> list[ProviderMachine]:
        """The pool's containers (and this server's, once it is known)."""
        try:
            found = await self._engine.containers(self._labels())
        except EngineError as exc:
            raise self._error("cannot list machines", exc) from None
        machines = []
        for container in found:
            labels = container.get("Labels") or {}
            state = _STATES.get(str(container.get("State", "")), "pending")
            machines.append(ProviderMachine(str(container["Id"]), labels.get(LABEL_MACHINE), state))
        return machines

    async def interruptions(self) -> list[Interruption]:
        """The pool's containers sent SIGTERM by someone other than this
        provider since the last call (the first call only starts the watch)."""
        # Stops that returned before this look's clock: their events are in it.
        covered = set(self._stopped)
        try:
            now = await self._engine.clock()
            since, self._seen_until = self._seen_until, now
            if since is None:
                return []
            filters = {"type": ["container"], "event": ["kill"], "label": self._label_filter()}
            events = await self._engine.events(since, now, filters)
        except EngineError as exc:
            raise self._error("cannot read the engine's events", exc) from None
        found: dict[str, Interruption] = {}
        seen = set()
        for event in events:
            actor = event.get("Actor") or {}
            container = str(actor.get("ID") or event.get("id") or "")
            signo = str((actor.get("Attributes") or {}).get("signal", ""))
            key = (container, int(event.get("timeNano") or 0))
            seen.add(key)
            if key in self._seen or container in self._stopping:
                continue
            if container and signo == str(int(signal.SIGTERM)):
                found[container] = Interruption(container, None, "stopped by the engine's user")
        self._seen = seen
        self._stopping -= covered
        self._stopped -= covered
        return list(found.values())

    async def close(self) -> None:
        await self._engine.close()

    def _labels(self) -> dict[str, str]:
        labels = {LABEL_POOL: self.pool}
        if self._server is not None:
            labels[LABEL_SERVER] = self._server
        return labels

    def _label_filter(self) -> list[str]:
        return [f"{key}={value}" for key, value in self._labels().items()]

    async def _remove_quietly(self, container: str) -> None:
        with contextlib.suppress(EngineError):
            await self._engine.remove(container)

    def _error(self, what: str, exc: Exception) -> ProviderError:
        detail = getattr(exc, "message", None) or str(exc)
        return ProviderError(f"pool {self.pool!r} (docker): {what}: {detail}")


def _read_only(mount: str) -> str:
    """``HOST:CONTAINER`` as a read-only bind (a mode given is kept)."""
    return mount if mount.count(":") >= 2 else f"{mount}:ro"


def build(
    pool: PoolSettings, *, server: str | None = None, default_engine: EngineAddress | None = None
) -> Provider:
    """The provider of a ``docker`` pool. ``server`` names this jobdock
    server in the labels (else learned from the first launch's
    ``jobdock-server`` tag); ``default_engine`` is the server's own engine
    (Settings' ``docker_host`` and ``docker_tls_*``), used where the pool
    names no ``host``."""
    settings = pool.docker
    if settings is None:
        raise ProviderError(f"pool {pool.name!r}: provider 'docker' needs [pools.docker]")
    if settings.host is not None:
        address = EngineAddress(
            settings.host,
            tls_ca=_path(settings.tls_ca),
            tls_cert=_path(settings.tls_cert),
            tls_key=_path(settings.tls_key),
        )
    else:
        address = default_engine or EngineAddress("unix:///var/run/docker.sock")
    try:
        engine = Engine(address)
    except EngineError as exc:
        raise ProviderError(f"pool {pool.name!r} (docker): {exc.message}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ProviderError(
            f"pool {pool.name!r} (docker): cannot read the engine's TLS files: {exc}"
        ) from None
    return DockerProvider(pool.name, settings, engine, server)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
