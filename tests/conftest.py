"""Fixtures shared by every kind of test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import engines
import slurm
from jobdock import Client
from pg import PostgresServer, PostgresUnavailable, find_bindir, server_user
from support import ServerProcess, in_ci

#: The tests' own knobs (``JOBDOCK_TEST_PG_BINDIR``, tests/pg.py): kept.
_TEST_KNOBS = "JOBDOCK_TEST_"


def pytest_configure(config: pytest.Config) -> None:
    """Remove every ``JOBDOCK_*`` setting from the environment before any test
    module is imported, so that a developer's own settings (a token, a server
    URL, a home) never reach the tests, nor the servers and CLIs they start
    with a copy of ``os.environ``. A test that wants one sets it itself.
    ``OTEL_*`` too: a developer's collector would turn traces on."""
    for name in list(os.environ):
        if name.startswith("OTEL_") or (
            name.startswith("JOBDOCK_") and not name.startswith(_TEST_KNOBS)
        ):
            del os.environ[name]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real ``jobdock serve`` shared by the tests that do not restart it."""
    proc = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url) as c:
        yield c


@pytest.fixture(scope="session")
def postgres_bindir() -> Path:
    """Where the PostgreSQL server binaries are. Tests that need them are
    skipped on a machine without them, except in CI (``CI=true``), where they
    fail: scripts/test installs them."""
    try:
        import psycopg  # noqa: F401 (the driver the tests reach the server with)

        server_user()
        return find_bindir()
    except (ImportError, PostgresUnavailable) as exc:
        if in_ci():
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL is not available: {exc}")


@pytest.fixture(scope="session")
def postgres(postgres_bindir: Path) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session, started by the tests
    themselves (tests/pg.py) and deleted at the end."""
    with PostgresServer(postgres_bindir) as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database on the session's PostgreSQL server,
    dropped after the test (connections still open to it are closed)."""
    name = postgres.create_database()
    yield postgres.url(name)
    if postgres.pid is None:
        # The test stopped or killed the shared server: bring it back for
        # the tests after it (tests that do so had better use own_postgres).
        postgres.start()
    postgres.drop_database(name)


@pytest.fixture
def own_postgres(postgres_bindir: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, for tests that stop, kill or
    restart it (about a second to start); deleted after the test."""
    with PostgresServer(postgres_bindir) as server:
        yield server


#: The container engines the session's tests ran on (said at the end).
ENGINES_USED: dict[str, str] = {}


def _start_engine(name: str, required_in_ci: bool) -> Iterator[engines.Engine]:
    try:
        engine = engines.ENGINES[name]().start()
    except engines.EngineMissing as exc:
        ENGINES_USED[name] = f"not run: {exc}"
        if required_in_ci and in_ci():
            pytest.fail(f"{name} is required in CI: {exc}", pytrace=False)
        pytest.skip(f"{name} is not available: {exc}")
    ENGINES_USED[name] = "ran"
    try:
        yield engine
        left = engines.wait_gone(engine, engines.NAMESPACE)
        assert not left, f"containers left behind on {name}: {left}"
    finally:
        engine.remove()


@pytest.fixture(scope="session")
def dockerd() -> Iterator[engines.Engine]:
    """A private dockerd for the session (Debian's docker.io), started by the
    tests themselves; skipped where it is not installed, except in CI."""
    yield from _start_engine("docker", required_in_ci=True)


@pytest.fixture(scope="session")
def podman() -> Iterator[engines.Engine]:
    """podman's API service for the session, where podman is installed."""
    yield from _start_engine("podman", required_in_ci=False)


@pytest.fixture(scope="module")
def docker_server(
    dockerd: engines.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A ``jobdock serve`` on the session's dockerd, for a module's tests."""
    server = engines.server_on(
        dockerd, tmp_path_factory.mktemp("docker-server"), conjob_timeout="20"
    ).start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ENGINES_USED:
        ran = ", ".join(f"{name} ({how})" for name, how in sorted(ENGINES_USED.items()))
        terminalreporter.write_line(f"container engines: {ran}")


@pytest.fixture(scope="session", autouse=True)
def _cgroups_of_killed_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers and workers that tests kill (as a crash would) leave their jobs'
    cgroups behind, as a real crash does; a restart would remove them
    (tests/integration/test_isolation.py checks that). At the end of the
    session, the groups of this session's homes are removed the same way."""
    yield
    if os.geteuid() != 0:
        return
    from jobdock.runtimes import cgroups
    from jobdock.runtimes.isolation import default_parent

    base = tmp_path_factory.getbasetemp()
    homes = [base, *base.glob("*"), *base.glob("*/*"), *base.glob("*/*/*")]
    for home in homes:
        if not (home / "jobdock.db").exists() and not any(home.glob("*.log")):
            continue  # not the home of a server or worker
        try:
            hierarchy = cgroups.detect(default_parent(home))
        except OSError:
            return
        for group in hierarchy.leftovers():
            cgroups.remove(group)
        hierarchy.remove_parent()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[slurm.SlurmCluster]:
    """A one-node Slurm cluster for the session (tests/slurm.py), its tools
    reached through SLURM_CONF; skipped where Slurm is not installed, except
    in CI. At the end no Slurm job may be left."""
    try:
        cluster = slurm.SlurmCluster().start()
    except slurm.SlurmMissing as exc:
        if in_ci():
            pytest.fail(f"Slurm is required in CI: {exc}", pytrace=False)
        pytest.skip(f"Slurm is not available: {exc}")
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
        left = slurm.wait_no_jobs(cluster)
        assert not left, f"Slurm jobs left behind: {left}"
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
