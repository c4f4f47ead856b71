"""The one small interface every machine provider implements (``docker``,
``command``, ``ec2``; one module each under ``jobdock.machines.providers``).

A provider only starts, stops and lists machines and reports interruptions;
what to start and when is the autoscaler's. A provider never sees the store.

Imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

ProviderState = Literal["pending", "running", "stopping", "stopped"]


class ProviderError(Exception):
    """A provider could not do what it was asked; ``message`` is one line
    that names the pool and the cause (shown by ``jobdock machines``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class MachineLaunch:
    """Everything a provider needs to start one machine."""

    #: jobdock's id of the machine (``m-POOL-HEX``); in tags and names.
    machine_id: str
    pool: str
    #: The labels the machine's agent offers (the pool's).
    labels: dict[str, str]
    #: The URL the agent reaches the server at.
    server_url: str
    #: The agent token made for this machine alone (secret: never logged).
    agent_token: str
    #: The agent's options after ``jobdock agent`` (``--server``, ``--label``,
    #: ``--concurrency``, ``--max-jobs``); the token travels in ``agent_env``.
    agent_args: list[str]
    #: JOBDOCK_URL, JOBDOCK_TOKEN, JOBDOCK_MACHINE_ID.
    agent_env: dict[str, str]
    #: ``jobdock-pool``, ``jobdock-server``, ``jobdock-machine``: how a
    #: provider finds its own machines again after a server restart.
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderMachine:
    """A machine as its provider sees it."""

    provider_id: str
    #: jobdock's id, read back from the machine's tags (None: not ours).
    machine_id: str | None
    state: ProviderState


@dataclass(frozen=True)
class Interruption:
    """A provider's notice that it will take a machine back (a spot
    interruption, a maintenance stop)."""

    provider_id: str
    #: When the provider takes it (epoch seconds; None: unknown, soon).
    at: float | None = None
    reason: str = "interrupted"


class Provider(Protocol):
    """Starts and stops the machines of one pool."""

    async def start(self, launch: MachineLaunch) -> str:
        """Start one machine; return the provider's id for it. Raises
        ProviderError."""
        ...

    async def stop(self, provider_id: str) -> None:
        """Stop (terminate) a machine; stopping one already gone is no error."""
        ...

    async def machines(self) -> list[ProviderMachine]:
        """This pool's machines, by their tags."""
        ...

    async def interruptions(self) -> list[Interruption]:
        """Notices of machines about to be taken back (none: an empty list)."""
        ...

    async def close(self) -> None:
        """Release clients and connections."""
        ...
