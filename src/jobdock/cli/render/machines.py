"""How ``jobdock machines`` shows the server's pools and machines: a table
of the pools (live over min and max, back-off, last decision and error),
then one of the machines (state, age, jobs, boot and machine time), from
``GET /v1/machines``' JSON. Imports the CLI's times and output only."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jobdock.cli.render.output import print_documents, show_table, state_style
from jobdock.cli.render.times import span

_POOLS = ("POOL", "PROVIDER", "LIVE/MIN/MAX", "BY STATE", "BACKOFF", "LAST DECISION", "LAST ERROR")
_MACHINES = ("MACHINE", "POOL", "STATE", "AGE", "JOBS", "BOOT", "MACHINE TIME", "ERROR")


def _epoch(value: Any) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


def _seconds(value: Any) -> str:
    return "" if value is None else span(float(value))


def _by_state(live: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {state}" for state, count in live.items() if count)


def _backoff(pool: Mapping[str, Any], now: float) -> str:
    until = _epoch(pool.get("backoff_until"))
    failures = int(pool.get("failures") or 0)
    if until is None or until <= now:
        return f"{failures} failed" if failures else ""
    return f"{span(until - now)} ({failures} failed)"


def _pool_row(pool: Mapping[str, Any], now: float) -> tuple[str, ...]:
    live: Mapping[str, int] = pool.get("live") or {}
    decided = _epoch(pool.get("decided_at"))
    decision = pool.get("last_decision") or ""
    if decision and decided is not None:
        decision = f"{decision} ({span(max(0.0, now - decided))} ago)"
    return (
        pool["name"],
        pool.get("provider", ""),
        f"{sum(live.values())}/{pool.get('min', 0)}/{pool.get('max', 0)}",
        _by_state(live),
        _backoff(pool, now),
        decision,
        pool.get("last_error") or "",
    )


def _machine_row(machine: Mapping[str, Any], now: float) -> tuple[str, ...]:
    requested = _epoch(machine.get("requested_at"))
    return (
        machine["id"],
        machine.get("pool", ""),
        machine.get("state", ""),
        "" if requested is None else span(max(0.0, now - requested)),
        ",".join(machine.get("jobs") or []),
        _seconds(machine.get("boot_seconds")),
        _seconds(machine.get("machine_seconds")),
        machine.get("error") or "",
    )


def show_machines(found: Mapping[str, Any], output: str) -> None:
    """``machines``' listing in the ``-o`` format (``""``: the two tables)."""
    if output in ("json", "yaml"):
        print_documents(found, output)
        return
    now = time.time()
    show_table(
        _POOLS,
        (_pool_row(pool, now) for pool in found.get("pools") or []),
        wrap={"LAST DECISION", "LAST ERROR"},
    )
    sys.stdout.write("\n")
    show_table(
        _MACHINES,
        (_machine_row(machine, now) for machine in found.get("machines") or []),
        wrap={"JOBS", "ERROR"},
        styles={"STATE": state_style},
    )
