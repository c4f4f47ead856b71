"""Fixtures of the contract suites: every test in tests/contract runs once per
Store implementation and once per Runtime implementation it uses.

To run the suites against another implementation, add one entry to STORES or
RUNTIMES.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import engines
from jobdock.models import JobSpec
from jobdock.runtimes import ProcessRuntime, Runtime
from jobdock.runtimes.container import ContainerRuntime
from jobdock.runtimes.isolation import Confinement
from jobdock.settings import Settings
from jobdock.store import Store
from jobdock.store.sql import SqlStore


def _sqlite(request: pytest.FixtureRequest) -> Callable[[], Store]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    url = f"sqlite:///{tmp_path}/jobs.db"
    return lambda: SqlStore(url)


def _postgresql(request: pytest.FixtureRequest) -> Callable[[], Store]:
    # A new database on the session's server (tests/conftest.py: skipped
    # without PostgreSQL binaries, except in CI).
    url: str = request.getfixturevalue("pg_url")
    return lambda: SqlStore(url)


#: name -> a function of the test's fixture request (to get other fixtures
#: from: a temporary directory, a database server) that gives a factory of
#: stores, every one of them connected to the same new, empty database.
STORES: dict[str, Callable[[pytest.FixtureRequest], Callable[[], Store]]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


@dataclass
class RuntimeCase:
    """A runtime under test, and how a job spec asks for it: image jobs name
    the test image, and run where host paths (python, tmp_path) are not."""

    name: str
    runtime: Runtime
    image: str | None = None
    #: Fields every spec of the case gets (a container runtime, a sandbox).
    fields: dict[str, Any] = field(default_factory=dict)
    #: Why the job's processes cannot be watched from the host, where they
    #: cannot (gVisor: its kernel has pids of its own).
    own_kernel: str | None = None

    @property
    def on_host(self) -> bool:
        return self.image is None

    def spec(self, command: list[str], **fields: Any) -> JobSpec:
        if self.image is not None:
            fields.setdefault("image", self.image)
        return JobSpec(command=command, **{**self.fields, **fields})


def _process_in_cgroups() -> ProcessRuntime:
    # Each job in its own cgroup (where this host allows it: as root, with
    # cgroups; elsewhere this is the plain process runtime again).
    return ProcessRuntime(Confinement.detect(parent="jobdock-contract", every_job=True))


def _container_case(name: str) -> Callable[[pytest.FixtureRequest], RuntimeCase]:
    def make(request: pytest.FixtureRequest) -> RuntimeCase:
        engine: engines.Engine = request.getfixturevalue("dockerd" if name == "docker" else name)
        settings = Settings(docker_host=engine.url, namespace=engines.NAMESPACE)
        return RuntimeCase(name, ContainerRuntime(settings), engines.BUSYBOX)

    return make


def _gvisor(request: pytest.FixtureRequest, container: bool) -> RuntimeCase:
    """gVisor's runsc: as dockerd's runtime ``runsc`` (tests/engines.py
    registers it), or around a process job (``sandbox: gvisor``)."""
    if shutil.which("runsc") is None:
        pytest.skip("gVisor's runsc is not installed (apt-get install runsc)")
    if container:
        case = _container_case("docker")(request)
        return RuntimeCase("docker-runsc", case.runtime, case.image, {"container_runtime": "runsc"})
    sandbox = {"isolation": {"sandbox": "gvisor", "filesystem": "readonly"}}
    why = "gVisor's kernel has processes of its own, which the host does not see"
    return RuntimeCase("process-gvisor", _process_in_cgroups(), None, sandbox, why)


#: name -> a function of the test's fixture request that makes the runtime.
RUNTIMES: dict[str, Callable[[pytest.FixtureRequest], RuntimeCase]] = {
    "process": lambda _: RuntimeCase("process", ProcessRuntime()),
    "process-cgroup": lambda _: RuntimeCase("process-cgroup", _process_in_cgroups()),
    "docker": _container_case("docker"),
    "podman": _container_case("podman"),
    "docker-runsc": lambda request: _gvisor(request, container=True),
    "process-gvisor": lambda request: _gvisor(request, container=False),
}

StoreOpener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=sorted(STORES))
def make_store(request: pytest.FixtureRequest) -> Callable[[], Store]:
    """Makes (unopened) stores, all on one new, empty database."""
    return STORES[request.param](request)


@pytest.fixture
async def open_store(make_store: Callable[[], Store]) -> AsyncIterator[StoreOpener]:
    """Opens stores on one new database (more than one: as separate servers
    sharing it would); all of them are closed after the test."""
    make = make_store
    opened: list[Store] = []

    async def open_one() -> Store:
        store = make()
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(open_store: StoreOpener) -> Store:
    """An open store on a new, empty database."""
    return await open_store()


@pytest.fixture(params=sorted(RUNTIMES))
async def runtime(request: pytest.FixtureRequest) -> AsyncIterator[RuntimeCase]:
    """A runtime (on a container engine of the session's, for image jobs)."""
    case = RUNTIMES[request.param](request)
    yield case
    case.runtime.close()
    if isinstance(case.runtime, ContainerRuntime):
        await case.runtime.aclose()
