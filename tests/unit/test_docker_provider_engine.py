"""Which engine a ``docker`` pool's machines run on: the pool's own (with
its TLS files), else the server's."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobdock.machines.provider import ProviderError
from jobdock.machines.providers.docker import DockerProvider, build
from jobdock.pool_settings import DockerPool, PoolSettings
from jobdock.runtimes.engine import EngineAddress


def pool(**docker: str) -> PoolSettings:
    settings = DockerPool.model_validate({"image": "agent:1", **docker})
    return PoolSettings(name="p", provider="docker", docker=settings)


async def test_a_pool_that_names_a_remote_engine_reaches_it() -> None:
    provider = build(
        pool(host="tcp://builder:2375"), default_engine=EngineAddress("unix:///server.sock")
    )
    assert isinstance(provider, DockerProvider)

    assert provider.address == EngineAddress("tcp://builder:2375")
    await provider.close()


def test_tls_files_that_cannot_be_read_are_a_provider_error_naming_the_pool() -> None:
    settings = pool(host="tcp://builder:2376", tls_ca="/nonexistent/ca.pem")

    with pytest.raises(ProviderError, match=r"^pool 'p' \(docker\): cannot read the engine's TLS"):
        build(settings)


async def test_a_pool_without_a_host_uses_the_servers_engine() -> None:
    server = EngineAddress("unix:///run/server-docker.sock")
    provider = build(pool(), default_engine=server)
    assert isinstance(provider, DockerProvider)

    assert provider.address == server
    await provider.close()


async def test_an_engine_that_does_not_answer_is_a_provider_error_naming_the_pool(
    tmp_path: Path,
) -> None:
    provider = build(pool(host=f"unix://{tmp_path}/no-engine.sock"))

    with pytest.raises(ProviderError, match=r"^pool 'p' \(docker\): cannot list machines: "):
        await provider.machines()
    await provider.close()
