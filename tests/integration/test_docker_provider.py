"""The ``docker`` machine provider on the tests' own dockerd: a machine is a
busybox container running the real ``jobdock agent`` (the host's Python and
this checkout's virtual environment bind-mounted read-only, host network)
against a real ``jobdock serve`` on loopback (docs/machines.md)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import engines
from agents import Site, site_of
from jobdock import JobState
from jobdock.machines.provider import MachineLaunch, Provider, ProviderError
from jobdock.machines.providers import docker
from jobdock.pool_settings import DockerPool, PoolSettings
from jobdock.runtimes.engine import EngineAddress
from support import FAST_SETTINGS, make_token

SERVER_TAG = "test-server"
#: A machine that runs no agent (the agent's options become sh's $0, $1, ...).
IDLE_MACHINE = ["sh", "-c", "sleep 600", "machine"]


def pool_of(name: str, labels: dict[str, str], **docker_settings: object) -> PoolSettings:
    settings: dict[str, object] = {
        "image": engines.BUSYBOX,
        "network": "host",
        "mounts": engines.host_python_mounts(),
        "agent_command": [sys.executable, "-m", "jobdock", "agent"],
        "stop_grace": 5,
        **docker_settings,
    }
    return PoolSettings(
        name=name, provider="docker", labels=labels, docker=DockerPool.model_validate(settings)
    )


def launch_of(site: Site, pool: PoolSettings, machine_id: str) -> MachineLaunch:
    """What the autoscaler hands the provider: a token for this machine alone."""
    token = make_token(site.server.home, machine_id, "--agent")
    labels = [f"--label={k}={v}" for k, v in pool.labels.items()]
    return MachineLaunch(
        machine_id=machine_id,
        pool=pool.name,
        labels=pool.labels,
        server_url=site.server.url,
        agent_token=token,
        agent_args=["--server", site.server.url, *labels],
        agent_env={
            "JOBDOCK_TOKEN": token,
            "JOBDOCK_MACHINE_ID": machine_id,
            "JOBDOCK_HOME": "/tmp/agent",
            "JOBDOCK_LOG_LEVEL": "info",
            "HOME": "/root",
            "PATH": "/bin:/usr/bin",
            **FAST_SETTINGS,
        },
        tags={
            "jobdock-pool": pool.name,
            "jobdock-server": SERVER_TAG,
            "jobdock-machine": machine_id,
        },
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from site_of(tmp_path)


@pytest.fixture
async def providers(dockerd: engines.Engine) -> AsyncIterator[list[Provider]]:
    """Providers built by the test (closed after it); every machine
    container the test left is removed, whatever happened."""
    made: list[Provider] = []
    yield made
    for provider in made:
        await provider.close()
    engines.remove_machines(dockerd)


def provider_of(pool: PoolSettings, dockerd: engines.Engine, made: list[Provider]) -> Provider:
    provider = docker.build(pool, server=SERVER_TAG, default_engine=EngineAddress(dockerd.url))
    made.append(provider)
    return provider


def inspect(dockerd: engines.Engine, container: str) -> int:
    with dockerd.http() as http:
        return http.get(f"/containers/{container}/json").status_code


async def test_a_container_machine_registers_its_agent_runs_a_job_and_is_removed(
    site: Site, dockerd: engines.Engine, providers: list[Provider]
) -> None:
    pool = pool_of("builders", {"pool": "builders"})
    provider = provider_of(pool, dockerd, providers)

    container = await provider.start(launch_of(site, pool, "m-builders-0a1b"))

    listed = await provider.machines()
    assert [(m.provider_id, m.machine_id) for m in listed] == [(container, "m-builders-0a1b")]
    with dockerd.http() as http:
        seen = http.get(f"/containers/{container}/json").json()
    assert seen["Name"] == "/jobdock-m-builders-0a1b"
    assert seen["Config"]["Labels"] == {
        docker.LABEL_POOL: "builders",
        docker.LABEL_SERVER: SERVER_TAG,
        docker.LABEL_MACHINE: "m-builders-0a1b",
    }
    assert all(bind.endswith(":ro") for bind in seen["HostConfig"]["Binds"])
    job_id = site.submit(
        {"command": ["sh", "-c", "echo built on $JOBDOCK_MACHINE_ID"], "requires": pool.labels}
    )
    job = site.finished(job_id, timeout=60)
    assert job.state is JobState.SUCCEEDED, site.logs()
    workers = site.http.get("/v1/workers").json()["workers"]
    ran_on = [w for w in workers if w["id"] == job.attempts[-1].worker]
    assert ran_on and ran_on[0]["labels"].get("pool") == "builders"

    await provider.stop(container)

    assert await provider.machines() == []
    assert inspect(dockerd, container) == 404
    await provider.stop(container)  # stopping one already gone is no error


async def test_machines_are_listed_by_their_pools_labels_only(
    site: Site, dockerd: engines.Engine, providers: list[Provider]
) -> None:
    idle = {"agent_command": IDLE_MACHINE, "init": True}
    builders = pool_of("builders", {"pool": "builders"}, **idle)
    testers = pool_of("testers", {"pool": "testers"}, **idle)
    build_provider = provider_of(builders, dockerd, providers)
    test_provider = provider_of(testers, dockerd, providers)

    mine = await build_provider.start(launch_of(site, builders, "m-builders-1"))
    await test_provider.start(launch_of(site, testers, "m-testers-1"))

    assert [m.provider_id for m in await build_provider.machines()] == [mine]
    assert [m.machine_id for m in await test_provider.machines()] == ["m-testers-1"]
    assert {m.state for m in await build_provider.machines()} == {"running"}


async def test_a_container_stopped_by_someone_else_is_an_interruption_and_ours_is_not(
    site: Site, dockerd: engines.Engine, providers: list[Provider]
) -> None:
    pool = pool_of("builders", {"pool": "builders"}, agent_command=IDLE_MACHINE, init=True)
    provider = provider_of(pool, dockerd, providers)
    ours = await provider.start(launch_of(site, pool, "m-builders-2"))
    taken = await provider.start(launch_of(site, pool, "m-builders-3"))
    assert await provider.interruptions() == []  # the watch starts here

    await provider.stop(ours)
    assert ours not in {m.provider_id for m in await provider.machines()}
    with dockerd.http() as http:
        assert http.post(f"/containers/{taken}/stop", params={"t": "1"}).status_code == 204

    noticed = await provider.interruptions()
    assert [i.provider_id for i in noticed] == [taken]
    assert await provider.interruptions() == []  # each notice once
    assert {m.provider_id: m.state for m in await provider.machines()} == {taken: "stopped"}


async def test_a_retried_start_of_the_same_machine_gives_its_container_not_a_second(
    site: Site, dockerd: engines.Engine, providers: list[Provider]
) -> None:
    pool = pool_of("builders", {"pool": "builders"}, agent_command=IDLE_MACHINE, init=True)
    provider = provider_of(pool, dockerd, providers)
    launch = launch_of(site, pool, "m-builders-4")

    first = await provider.start(launch)
    again = await provider.start(launch)

    assert again == first
    assert [m.provider_id for m in await provider.machines()] == [first]


async def test_an_image_the_engine_cannot_get_is_a_provider_error_of_one_line(
    site: Site, dockerd: engines.Engine, providers: list[Provider]
) -> None:
    pool = pool_of("builders", {"pool": "builders"}, image="localhost/no-such-machine:1")
    provider = provider_of(pool, dockerd, providers)

    with pytest.raises(ProviderError) as raised:
        await provider.start(launch_of(site, pool, "m-builders-5"))

    assert raised.value.message.startswith("pool 'builders' (docker): cannot create a machine: ")
    assert "no-such-machine" in raised.value.message and "\n" not in raised.value.message
    assert await provider.machines() == []
