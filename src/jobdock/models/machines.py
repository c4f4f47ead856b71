"""Machines started for jobs and the pools they belong to, as the store
records them (docs/machines.md#pools-and-the-autoscaler).

A machine's life: ``requested`` (the autoscaler decided to start it),
``booting`` (its provider started it; its agent has not registered yet),
``ready`` (its agent registered), ``draining`` (being stopped: no new jobs),
then ``stopped`` or ``failed`` (it never registered, its provider failed, or
it died without notice). The legal moves are checked in one place,
:data:`MACHINE_MOVES`; the store makes each with one conditional write.

Imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

MachineState = Literal["requested", "booting", "ready", "draining", "stopped", "failed"]

MACHINE_STATES: tuple[MachineState, ...] = get_args(MachineState)
#: The states of a machine that holds (or will hold) a provider's machine.
LIVE_MACHINE_STATES: tuple[MachineState, ...] = ("requested", "booting", "ready", "draining")
#: The states a machine ends in.
ENDED_MACHINE_STATES: tuple[MachineState, ...] = ("stopped", "failed")

#: state -> the states it may move to.
MACHINE_MOVES: dict[MachineState, tuple[MachineState, ...]] = {
    "requested": ("booting", "draining", "stopped", "failed"),
    "booting": ("ready", "draining", "stopped", "failed"),
    "ready": ("draining", "stopped", "failed"),
    "draining": ("stopped", "failed"),
    "stopped": (),
    "failed": (),
}


def moves_into(state: MachineState) -> tuple[MachineState, ...]:
    """The states a machine may be in to move to ``state``."""
    return tuple(source for source, targets in MACHINE_MOVES.items() if state in targets)


@dataclass(frozen=True)
class MachineRecord:
    """One machine of a pool, as recorded (``GET /v1/machines``)."""

    #: ``m-POOL-HEX``: in the provider's tags and the agent's worker id.
    id: str
    pool: str
    state: MachineState
    #: The provider's id (an instance id, a container id); None until started.
    provider_id: str | None
    #: The id of the agent token made for this machine alone.
    token_id: str | None
    jobs_done: int
    requested_at: float
    #: When its agent registered (it became ``ready``).
    booted_at: float | None
    #: When it last ran a job (or became ready); idle time counts from here.
    last_busy_at: float | None
    #: When the autoscaler began to stop it.
    stopping_at: float | None
    stopped_at: float | None
    #: Why it failed or was stopped early (one line), else None.
    error: str | None
    #: Which API server started it.
    server: str | None

    @property
    def live(self) -> bool:
        """Whether it holds (or will hold) a provider's machine."""
        return self.state in LIVE_MACHINE_STATES


@dataclass(frozen=True)
class PoolState:
    """What the autoscaler last decided for a pool, and its back-off."""

    name: str
    #: Failures in a row (machines that never registered, provider errors).
    failures: int
    #: No machine starts before this (epoch seconds) after failures.
    backoff_until: float | None
    last_error: str | None
    #: One line: what it last decided ("start 2: 3 jobs wait", "stop m-...").
    last_decision: str | None
    decided_at: float | None
