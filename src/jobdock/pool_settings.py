"""The settings of machine pools (``[[pools]]`` in the config file): machines
started for jobs that need them and stopped after (docs/machines.md).

One pool names its provider (``ec2``, ``docker`` or ``command``) and that
provider's own table (``[pools.ec2]``, ...). Read by ``settings.py`` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobdock.models import CONTAINER_LABEL, MAX_COUNT, Duration

#: A pool's name: it appears in machine ids, tags and labels.
POOL_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
ProviderKind = Literal["ec2", "docker", "command"]


class Ec2Pool(BaseModel):
    """``[pools.ec2]``: instances started with boto3 (on-demand or spot)."""

    model_config = ConfigDict(extra="forbid")

    region: str = Field(min_length=1, max_length=64)
    instance_type: str = Field(min_length=1, max_length=64)
    image_id: str = Field(min_length=1, max_length=128)
    spot: bool = False
    max_price: str | None = Field(None, max_length=32, description="USD per hour; spot only.")
    subnet_id: str | None = Field(None, max_length=128)
    security_group_ids: list[str] = Field(default_factory=list, max_length=16)
    key_name: str | None = Field(None, max_length=255)
    iam_instance_profile: str | None = Field(None, max_length=2048)
    #: An EC2 endpoint other than AWS's (a test stand-in such as moto's server).
    endpoint_url: str | None = Field(None, max_length=2048)
    #: Shell lines the user data runs before starting the agent (installing jobdock).
    install: str = Field("pip install jobdock", max_length=16384)
    #: The agent's argv on the instance, before jobdock's own options.
    agent_command: list[str] = Field(
        default_factory=lambda: ["/usr/local/bin/jobdock", "agent"], min_length=1, max_length=64
    )
    #: An AWS profile of the server's (default: boto3's own credential chain).
    profile: str | None = Field(None, max_length=128)
    #: More tags on each instance (cost allocation, say); jobdock's own win.
    tags: dict[str, str] = Field(default_factory=dict, max_length=32)
    #: IMDSv2 hops: 1 keeps the user data (and its token) from job containers.
    metadata_hop_limit: int = Field(1, ge=1, le=64)


class DockerPool(BaseModel):
    """``[pools.docker]``: a machine is a container running ``jobdock agent``."""

    model_config = ConfigDict(extra="forbid")

    #: The Docker Engine (``unix://...`` or ``tcp://host:2376``); default: DOCKER_HOST's.
    host: str | None = Field(None, max_length=2048)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    image: str = Field(min_length=1, max_length=512)
    network: str | None = Field(None, max_length=255)
    #: Read-only binds ``HOST:CONTAINER`` (the host's Python and virtual environment).
    mounts: list[str] = Field(default_factory=list, max_length=32)
    #: The agent's argv in the container, before jobdock's own options.
    agent_command: list[str] = Field(default_factory=lambda: ["jobdock", "agent"], max_length=64)
    privileged: bool = False
    #: Run an init (the engine's docker-init) as the container's pid 1, to reap orphans.
    init: bool = False
    #: How long a stopped machine's agent has to hand its jobs back before SIGKILL.
    stop_grace: Duration = Field(10.0, ge=0, le=3600)


class CommandPool(BaseModel):
    """``[pools.command]``: operator scripts start and stop machines."""

    model_config = ConfigDict(extra="forbid")

    #: Starts one machine; prints its id on its last line of stdout.
    start: list[str] = Field(min_length=1, max_length=64)
    #: Stops the machine whose id is its last argument (idempotent).
    stop: list[str] = Field(min_length=1, max_length=64)
    #: Optional: prints the ids of the pool's live machines, one per line.
    list_machines: list[str] | None = Field(None, max_length=64)
    #: Optional: prints the ids of machines about to be taken back, one per line.
    interruptions: list[str] | None = Field(None, max_length=64)
    timeout: Duration = Field(60.0, gt=0, le=3600)


class PoolSettings(BaseModel):
    """One ``[[pools]]`` entry."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=POOL_NAME.pattern)
    provider: ProviderKind
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    min: int = Field(0, ge=0, le=1000)
    max: int = Field(1, ge=0, le=1000)
    capacity: int = Field(1, ge=1, le=1024, description="Jobs at once per machine.")
    max_jobs: int = Field(0, ge=0, le=MAX_COUNT, description="Jobs per machine; 0: reuse.")
    idle_timeout: Duration = Field(300.0, ge=0, le=7 * 86400)
    boot_timeout: Duration = Field(240.0, gt=0, le=86400)
    ec2: Ec2Pool | None = None
    docker: DockerPool | None = None
    command: CommandPool | None = None
    #: The URL machines reach this server at (default: the server's own).
    server_url: str | None = Field(None, max_length=2048)

    @model_validator(mode="after")
    def _provider_table(self) -> PoolSettings:
        if getattr(self, self.provider) is None:
            raise ValueError(
                f"pool {self.name!r}: provider {self.provider!r} needs [pools.{self.provider}]"
            )
        if self.min > self.max:
            raise ValueError(f"pool {self.name!r}: min ({self.min}) is above max ({self.max})")
        return self


def pool_of(requires: Mapping[str, str], pools: Sequence[PoolSettings]) -> PoolSettings | None:
    """The first pool whose labels hold every label ``requires`` names
    (but the container engine's), if it names any."""
    wanted = {k: v for k, v in requires.items() if k != CONTAINER_LABEL}
    if not wanted:
        return None
    for pool in pools:
        if all(pool.labels.get(key) == value for key, value in wanted.items()):
            return pool
    return None
