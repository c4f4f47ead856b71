"""Container jobs: the job runs as a container through the Docker Engine API
(dockerd, or podman's API service).

Each attempt is one container, labelled with its job, attempt, namespace and
store (a hash of the store's URL, so two jobdocks on one engine never take
each other's containers for their own).
The runtime attaches to it before starting it, so every byte of stdout and
stderr reaches jobdock's log store live and separately, as for a process
job; stdin is written to the attach stream and then closed. The container is
removed once the attempt's outcome is recorded; containers whose attempt is
over (a worker died with them) are found by their labels and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from jobdock.errors import EngineError, EngineUnavailable, ImageNotFound, JobdockError, SpawnError
from jobdock.models import SECRETS_DIR_ENV, AttemptInputs, Cache, JobSpec, Reason, Stream
from jobdock.models.jobs import container_name
from jobdock.models.outcome import ExitStatus
from jobdock.runtimes.base import AttemptInfo, Stdin
from jobdock.runtimes.engine import AttachStream, Engine, EngineAddress
from jobdock.runtimes.inputs import base_inputs, container_inputs
from jobdock.settings import Settings

_log = logging.getLogger(__name__)

#: Labels on every container and cache volume jobdock makes.
LABEL_NAMESPACE = "io.jobdock.namespace"
LABEL_JOB = "io.jobdock.job"
LABEL_ATTEMPT = "io.jobdock.attempt"
LABEL_OWNER = "io.jobdock.owner"
LABEL_CACHE = "io.jobdock.cache"
LABEL_STORE = "io.jobdock.store"
#: The exit code of a container whose main process was killed by SIGKILL.
_SIGKILL_EXIT = 137
_STREAMS = {1: Stream.STDOUT, 2: Stream.STDERR}


def engine_address(settings: Settings) -> EngineAddress:
    """Where the settings say the engine is."""
    return EngineAddress(
        settings.docker_host,
        tls_ca=settings.docker_tls_ca,
        tls_cert=settings.docker_tls_cert,
        tls_key=settings.docker_tls_key,
    )


def store_identity(db_url: str) -> str:
    """The store's identity on the engine: a hash of its URL, normalized
    (an SQLite file's resolved path; a server's backend, user, host, port
    and database, without password, driver or options), so every server of
    one store agrees on it. Never the URL itself: it may hold a password."""
    try:
        url = make_url(db_url)
    except ArgumentError:
        key = db_url
    else:
        backend = url.get_backend_name()
        database = url.database
        if backend == "sqlite" and database and database != ":memory:":
            database = str(Path(database).expanduser().resolve())
        host = (url.host or "").lower()
        key = f"{backend}\0{url.username or ''}\0{host}\0{url.port or ''}\0{database or ''}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def cache_volume(namespace: str, owner: str, cache: str) -> str:
    """The volume that holds ``owner``'s cache ``cache``: the same for every
    run of theirs, another for anyone else's cache of the same name."""
    key = hashlib.sha256(f"{namespace}\0{owner}\0{cache}".encode()).hexdigest()[:32]
    return f"jobdock-cache-{key}"


def exit_status_of(state: Mapping[str, Any], memory_limit: int | None) -> ExitStatus:
    """How a container ended, from its inspected ``State``.

    An exit code above 128 is read as death by signal (code - 128), as a
    shell reports it. A SIGKILL is an OOM kill when the engine says so
    (dockerd: ``OOMKilled``), or when the container had a memory limit and
    the engine does not tell (podman leaves ``OOMKilled`` false).
    """
    code = int(state.get("ExitCode") or 0)
    signal = code - 128 if 128 < code <= 128 + 64 else None
    if state.get("OOMKilled") or (code == _SIGKILL_EXIT and memory_limit):
        limit = f" (limit {memory_limit} bytes)" if memory_limit else ""
        return ExitStatus(code, signal, Reason.OOM, f"out of memory{limit}")
    return ExitStatus(exit_code=code, signal=signal)


class ContainerRuntime:
    """Starts image jobs as containers on one engine."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or Engine(engine_address(settings))
        self._labels = {LABEL_NAMESPACE: settings.namespace}
        #: The labels of the containers this store's workers made (volumes
        #: are per namespace: a cache outlives a store).
        self._own = {**self._labels, LABEL_STORE: store_identity(settings.db_url)}

    async def aclose(self) -> None:
        await self.engine.close()

    def close(self) -> None:
        """Nothing to release synchronously; see aclose."""

    async def start(
        self, spec: JobSpec, stdin: Stdin, env: Mapping[str, str], info: AttemptInfo
    ) -> ContainerExecution:
        assert spec.image is not None
        try:
            await self._ensure_image(spec.image, spec.pull)
            binds = [await self._cache_bind(cache, info.owner) for cache in spec.caches]
            secrets_dir = env.get(SECRETS_DIR_ENV)
            if secrets_dir:
                # The job's secret files, read-only, at the same path or the
                # spec's (the engine must run on this machine to see them).
                target = spec.secrets_path or secrets_dir
                binds.append(f"{secrets_dir}:{target}:ro")
                env = {**env, SECRETS_DIR_ENV: target}
            config = self._config(spec, bool(stdin), env, info, binds)
            container = await self.engine.create(
                config, name=container_name(info.job_id, info.attempt)
            )
            inputs = await self._pinned(spec, stdin, env, container)
        except EngineUnavailable:
            raise
        except EngineError as exc:
            raise SpawnError(f"cannot create the container: {exc.message}") from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise SpawnError(f"cannot make the container's configuration: {exc}") from None
        try:
            stream = await self._attach(container, bool(stdin))
            await self.engine.start(container)
            started_at = time.time()
        except BaseException as exc:
            with contextlib.suppress(EngineError):
                await self.engine.remove(container)
            if isinstance(exc, EngineError) and not isinstance(exc, EngineUnavailable):
                raise SpawnError(f"cannot start the container: {exc.message}") from None
            raise
        return ContainerExecution(
            self.engine,
            container,
            stream,
            stdin,
            started_at,
            spec.resources.memory,
            spec.kill_grace,
            spec.image if spec.remove_image else None,
            inputs,
        )

    async def _pinned(
        self, spec: JobSpec, stdin: Stdin, env: Mapping[str, str], container: str
    ) -> AttemptInputs:
        """What the created container will run: the image it was made from
        (by digest: a tag moved later does not change it) and the command,
        entrypoint, directory and user the engine resolved."""
        assert spec.image is not None
        base = base_inputs(spec, stdin, env)
        try:
            record = await self.engine.inspect(container)
            image = await self.engine.image_inspect(str(record["Image"]))
        except EngineUnavailable:
            raise
        except (EngineError, KeyError) as exc:
            _log.warning("cannot tell which image container %s runs: %s", container[:12], exc)
            return base.model_copy(update={"image": spec.image})
        return container_inputs(base, spec.image, record, image)

    async def user_namespaces(self) -> tuple[bool, str]:
        """Whether a container's root is apart from the host's root, and
        one line saying so for the start-up log."""
        userns = self.settings.container_userns
        try:
            remapped = await self.engine.remaps_users()
        except JobdockError as exc:
            return False, f"cannot tell whether the engine remaps users: {exc.message}"
        if remapped:
            return True, "the engine remaps user namespaces: root in a container is not root here"
        if userns not in (None, "", "host"):
            return True, f"containers run with UsernsMode {userns!r}"
        return False, (
            "containers share the host's user namespace: root in a container is root on "
            "the host (jobs get no host paths, no privileges, no-new-privileges); turn on "
            "dockerd's userns-remap, or set container_userns (podman: 'auto')"
        )

    async def _attach(self, container: str, stdin: bool) -> AttachStream:
        try:
            return await self.engine.attach(container, stdin)
        except EngineUnavailable:
            raise
        except EngineError:
            # podman refuses to attach to a container it cannot start (409):
            # its start says why.
            await self.engine.start(container)
            raise

    async def _cache_bind(self, cache: Cache, owner: str) -> str:
        volume = cache_volume(self.settings.namespace, owner, cache.name)
        labels = {**self._labels, LABEL_OWNER: owner, LABEL_CACHE: cache.name}
        await self.engine.ensure_volume(volume, labels)
        return f"{volume}:{cache.path}"

    async def _ensure_image(self, image: str, pull: str) -> None:
        if pull == "always" or (
            pull == "if-not-present" and not await self.engine.image_exists(image)
        ):
            await self.engine.pull(image, self._registry_auth(image))
        elif pull == "never" and not await self.engine.image_exists(image):
            raise ImageNotFound(image, "it is not on the engine and the job's pull policy is never")

    def _registry_auth(self, image: str) -> dict[str, str] | None:
        first = image.split("/", 1)[0]
        if "/" not in image or not ("." in first or ":" in first or first == "localhost"):
            first = "docker.io"
        auth = self.settings.registry_auth.get(first)
        if auth is None:
            return None
        return {
            "username": auth.username,
            "password": auth.password.get_secret_value(),
            "serveraddress": first,
        }

    def _config(
        self,
        spec: JobSpec,
        stdin: bool,
        env: Mapping[str, str],
        info: AttemptInfo,
        binds: list[str],
    ) -> dict[str, Any]:
        """The engine's create body for one attempt of ``spec``."""
        labels = {
            **{f"io.jobdock.label.{k}": v for k, v in spec.labels.items()},
            **self._own,
            LABEL_JOB: info.job_id,
            LABEL_ATTEMPT: str(info.attempt),
            LABEL_OWNER: info.owner,
        }
        config: dict[str, Any] = {
            "Image": spec.image,
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Labels": labels,
            "AttachStdout": True,
            "AttachStderr": True,
            "AttachStdin": stdin,
            "OpenStdin": stdin,
            "StdinOnce": stdin,
            "Tty": False,
            "HostConfig": self._host_config(spec, binds),
        }
        if spec.command:
            config["Cmd"] = spec.command
        if spec.entrypoint is not None:
            config["Entrypoint"] = spec.entrypoint
        if spec.cwd is not None:
            config["WorkingDir"] = spec.cwd
        if spec.user is not None:
            config["User"] = spec.user
        return config

    def _host_config(self, spec: JobSpec, binds: list[str]) -> dict[str, Any]:
        """The container's HostConfig: its binds, privileges and limits."""
        resources = spec.resources
        # Binds are the owner's cache volumes and the attempt's secrets
        # directory (read-only): no spec can name a host path, so never the
        # engine's socket. Never privileged, and no process gains privileges
        # (setuid binaries) inside; PID, IPC and UTS namespaces are the
        # container's own (nothing here sets them to the host's).
        host: dict[str, Any] = {
            "Binds": binds,
            "AutoRemove": False,
            "Init": self.settings.container_init,
            "Privileged": False,
            "SecurityOpt": ["no-new-privileges"],
        }
        if self.settings.container_userns is not None:
            host["UsernsMode"] = self.settings.container_userns
        if resources.memory:
            # No swap beyond the limit: the limit is what the job can use.
            host.update(Memory=resources.memory, MemorySwap=resources.memory)
        if resources.cpus:
            host["NanoCpus"] = int(resources.cpus * 1e9)
        if resources.pids:
            host["PidsLimit"] = resources.pids
        if spec.network is not None:
            host["NetworkMode"] = spec.network
        if spec.container_runtime is not None:
            host["Runtime"] = spec.container_runtime
        return host

    async def sweep(self, attempt_is_live: Callable[[str, int], Awaitable[bool]]) -> int:
        """Remove this namespace's and store's containers whose attempt is
        over (their worker died before removing them); another store's are
        never looked at, its jobs are not in this one. Returns how many were
        removed."""
        removed = 0
        for container in await self.engine.containers(self._own):
            labels = container.get("Labels") or {}
            job_id, attempt = labels.get(LABEL_JOB), labels.get(LABEL_ATTEMPT)
            if job_id is None or attempt is None or not attempt.isdigit():
                continue
            if await attempt_is_live(job_id, int(attempt)):
                continue
            await self.engine.remove(container["Id"])
            removed += 1
            _log.warning(
                "removed container %s of attempt %s of job %s, left behind by a lost worker",
                container["Id"][:12],
                attempt,
                job_id,
            )
        return removed


class ContainerExecution:
    """A running container job."""

    pid: int | None = None
    pid_start: int | None = None

    def __init__(
        self,
        engine: Engine,
        container: str,
        stream: AttachStream,
        stdin: Stdin,
        started_at: float,
        memory_limit: int | None,
        grace: float,
        remove_image: str | None = None,
        inputs: AttemptInputs | None = None,
    ) -> None:
        self.container = container
        self.inputs = inputs
        #: The image to remove after the container (the spec's remove_image).
        self._remove_image = remove_image
        self.started_at = started_at
        self._engine = engine
        self._stream = stream
        self._memory_limit = memory_limit
        self._grace = grace
        self._output_done = asyncio.Event()
        self._exit: asyncio.Task[ExitStatus] = asyncio.ensure_future(self._wait_exit())
        self._signals: set[asyncio.Task[None]] = set()
        self._stdin: asyncio.Task[None] | None = None
        if stdin:
            self._stdin = asyncio.ensure_future(stream.write_stdin(stdin))

    async def output(self) -> AsyncIterator[list[tuple[Stream, bytes]]]:
        try:
            while (frames := await self._stream.read()) is not None:
                batch = [(_STREAMS[n], data) for n, data in frames if n in _STREAMS and data]
                if batch:
                    yield batch
        finally:
            self._output_done.set()

    async def _wait_exit(self) -> ExitStatus:
        # The attach stream ends when the container does (or the engine goes
        # away); the engine's wait is only the fallback (slower on podman).
        # An engine request is not raced and cancelled: under uvloop, anyio
        # may then complete the cancelled request's future and log an error.
        await self._output_done.wait()
        state = (await self._engine.inspect(self.container))["State"]
        # Podman ends the attach stream of a container it is stopping before
        # it has recorded the exit code: "stopping" reads ExitCode 0.
        if state.get("Running") or state.get("Status") in ("created", "running", "stopping"):
            await self._engine.wait(self.container)
            state = (await self._engine.inspect(self.container))["State"]
        return exit_status_of(state, self._memory_limit)

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exit)

    def _send(self, request: Awaitable[None]) -> None:
        task = asyncio.ensure_future(request)
        self._signals.add(task)
        task.add_done_callback(self._signal_sent)

    def _signal_sent(self, task: asyncio.Task[None]) -> None:
        self._signals.discard(task)
        exc = None if task.cancelled() else task.exception()
        # 409/404: the container is not running any more; nothing to stop.
        if exc is not None and not (isinstance(exc, EngineError) and exc.status in (404, 409)):
            _log.warning("cannot signal container %s: %s", self.container[:12], exc)

    def terminate(self) -> None:
        """The engine's stop: the image's stop signal, then SIGKILL after the
        grace period (the worker kills at the end of it too)."""
        if not self._exit.done():
            self._send(self._engine.stop(self.container, self._grace))

    def kill(self) -> None:
        if not self._exit.done():
            self._send(self._engine.kill(self.container))

    async def close(self) -> None:
        """Remove the container (its outcome is recorded)."""
        self._stream.close()
        for task in (self._exit, self._stdin, *self._signals):
            if task is not None and not task.done():
                task.cancel()
        await self._engine.remove(self.container)
        if self._remove_image is not None:
            await self._engine.remove_image(self._remove_image)
