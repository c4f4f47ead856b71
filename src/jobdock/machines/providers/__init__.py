"""The machine providers, one module each (``docker``, ``command``, ``ec2``);
each has ``build(pool, *, server) -> Provider`` (``jobdock.machines.provider``).
:func:`open_provider` picks the pool's; each module is imported only when a
pool uses it (boto3, for ``ec2``, is an optional extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobdock.machines.provider import Provider, ProviderError
from jobdock.pool_settings import PoolSettings

if TYPE_CHECKING:
    from jobdock.runtimes.engine import EngineAddress


def open_provider(
    pool: PoolSettings, *, server: str | None, default_engine: EngineAddress | None = None
) -> Provider:
    """The provider of ``pool``; raises ProviderError (one line naming the
    pool) where it cannot be made."""
    if pool.provider == "command":
        from jobdock.machines.providers import command

        return command.build(pool, server=server)
    if pool.provider == "docker":
        from jobdock.machines.providers import docker

        return docker.build(pool, server=server, default_engine=default_engine)
    if pool.provider == "ec2":
        from jobdock.machines.providers import ec2

        return ec2.build(pool, server=server)
    raise ProviderError(f"pool {pool.name!r}: unknown provider {pool.provider!r}")
