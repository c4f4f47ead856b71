"""What this server can run jobs on: its process runtime and how it confines
process jobs, and its container engine, whether that answers now.

Built once (the server's lifespan, or ``jobdock worker``) and shared: the
worker asks it which runtime runs a spec and tells it when the engine went
away; the submit policy asks it what of a spec this server cannot enforce
(``missing``). While the engine does not answer it asks again every
``ENGINE_PROBE_SECONDS``, and image jobs are not claimed meanwhile.

Imports the runtimes, the settings and the foundation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from jobdock.errors import EngineUnavailable, JobdockError, SpawnError
from jobdock.models import JobSpec
from jobdock.runtimes.base import Runtime
from jobdock.runtimes.container import ContainerRuntime
from jobdock.runtimes.isolation import Confinement, default_parent
from jobdock.runtimes.process import ProcessRuntime
from jobdock.runtimes.slurm import SlurmOptions, SlurmRuntime
from jobdock.settings import Settings

_log = logging.getLogger(__name__)

#: While the container engine does not answer, ask it again this often.
ENGINE_PROBE_SECONDS = 2.0

#: Called each time the engine answers after a time it did not (and at start).
EngineBack = Callable[[], Awaitable[None]]


def confinement_of(settings: Settings) -> Confinement:
    """What this host offers to confine process jobs, with the server's policy."""
    return Confinement.detect(
        cgroups_mode=settings.cgroups,
        parent=settings.cgroup_parent or default_parent(settings.home),
        unconfined=settings.unisolated,
        isolate_by_default=settings.isolate_by_default,
        allow_host_network=settings.allow_host_network,
        every_job=settings.cgroup_every_job,
    )


def _process_runtime(settings: Settings) -> Runtime:
    """What runs process jobs: this machine, or the Slurm cluster it submits to."""
    if settings.runtime == "slurm":
        return SlurmRuntime(slurm_options(settings))
    return ProcessRuntime(confinement_of(settings))


def slurm_options(settings: Settings) -> SlurmOptions:
    """How a worker submits to Slurm, from its settings."""
    return SlurmOptions(
        directory=settings.slurm_dir or settings.home / "slurm",
        partition=settings.slurm_partition,
        account=settings.slurm_account,
        qos=settings.slurm_qos,
        allowed=settings.slurm_allowed,
        poll_seconds=settings.slurm_poll_seconds,
        conf=settings.slurm_conf,
    )


class Engines:
    """The runtimes this server runs jobs on, and the health of its engine."""

    def __init__(
        self,
        settings: Settings,
        process: Runtime | None = None,
        containers: ContainerRuntime | None = None,
    ) -> None:
        self.settings = settings
        self.process: Runtime = process or _process_runtime(settings)
        self.containers = containers or (
            ContainerRuntime(settings) if settings.containers else None
        )
        # Image jobs are claimed only while the engine answers.
        self._engine_ok = False
        self._probe: asyncio.Task[None] | None = None
        self._on_back: EngineBack | None = None

    @property
    def images_ok(self) -> bool:
        """Whether image jobs can be run now: the engine answered last time."""
        return self._engine_ok

    def no_images(self) -> str | None:
        """Why this server runs no image jobs now, or None when it does."""
        if self.containers is None:
            return "this server runs none: containers = false"
        if not self._engine_ok:
            return f"no docker or podman answers at {self.settings.docker_host}"
        return None

    def missing(self, spec: JobSpec) -> str | None:
        """What of ``spec`` this server's runtime cannot enforce, or None. An
        image job's limits and isolation are the engine's, never missing here."""
        if spec.image is None and isinstance(self.process, ProcessRuntime):
            return self.process.confinement.missing(spec)
        return None

    def runtime_for(self, spec: JobSpec) -> Runtime:
        """The runtime that runs ``spec``; SpawnError without an engine for an image."""
        if spec.image is None:
            return self.process
        if self.containers is None:
            raise SpawnError("this worker does not run image jobs")
        return self.containers

    async def confine(self) -> None:
        """Say how jobs will be confined; remove this server's leftover groups."""
        if not isinstance(self.process, ProcessRuntime):
            return
        confinement = self.process.confinement
        _log.info("process jobs: %s", confinement.describe())
        if confinement.hierarchy is None or confinement.bwrap is None:
            what = "run without them (isolation: none)"
            if confinement.unconfined == "refuse":
                what = "be refused"
            _log.warning(
                "this server cannot fully isolate jobs; jobs that ask for limits or "
                "isolation it cannot enforce will %s",
                what,
            )
        removed = await asyncio.get_running_loop().run_in_executor(
            None, confinement.remove_leftovers
        )
        if removed:
            _log.warning("removed %d cgroup(s) left by an earlier run", removed)

    async def watch(self, on_back: EngineBack) -> None:
        """Ask the engine once (if there is one), and until it answers if it
        does not; ``on_back`` runs each time it answers again."""
        self._on_back = on_back
        if self.containers is not None:
            await self.down(None)

    async def down(self, error: EngineUnavailable | None) -> None:
        """Stop claiming image jobs and ask the engine until it answers again
        (with ``error`` None, ask once first: at start)."""
        if error is None:
            if await self._answers():
                return
        elif self._engine_ok:
            self._engine_ok = False
            _log.warning("%s; image jobs wait until it is back", error.message)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._ask_until_back())

    async def _answers(self) -> bool:
        assert self.containers is not None
        try:
            await self.containers.engine.ping()
        except JobdockError as exc:
            if self._engine_ok or self._probe is None:
                _log.warning("%s; image jobs wait until it is back", exc.message)
            self._engine_ok = False
            return False
        if not self._engine_ok:
            apart, said = await self.containers.user_namespaces()
            level = logging.WARNING if self.settings.auth_enabled and not apart else logging.INFO
            _log.log(level, "container engine at %s answers; %s", self.settings.docker_host, said)
        self._engine_ok = True
        if self._on_back is not None:
            await self._on_back()
        return True

    async def _ask_until_back(self) -> None:
        while not await self._answers():  # noqa: ASYNC110 (polls the engine)
            await asyncio.sleep(ENGINE_PROBE_SECONDS)

    async def aclose(self) -> None:
        """Stop asking the engine; release the runtimes (after the last attempt)."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        self.process.close()
        if self.containers is not None:
            await self.containers.aclose()
