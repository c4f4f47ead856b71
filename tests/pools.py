"""What the pool tests share: a pool's machines and state as the store
records them, and (for the ``command`` provider) the machines' directory
that tests/machine_script.py writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from jobdock.models.machines import MachineRecord, PoolState
from jobdock.store.sql import SqlStore


class PoolRecords:
    """A pool's machines, state and tokens, read from the store ``db``."""

    def __init__(self, db: str) -> None:
        self.db = db

    def machines(self, since: float | None = None) -> list[MachineRecord]:
        """Live machines (and ended ones since ``since``), newest first."""
        return asyncio.run(self._read(lambda store: store.list_machines(since=since)))

    def pool_states(self) -> list[PoolState]:
        return asyncio.run(self._read(lambda store: store.pool_states()))

    def token_revoked(self, token_id: str) -> bool:
        stored = asyncio.run(self._read(lambda store: store.find_token(token_id)))
        return stored is not None and stored.info.revoked_at is not None

    async def _read(self, read: Any) -> Any:
        async with SqlStore(self.db) as store:
            return await read(store)


class Pool(PoolRecords):
    """A ``command`` pool: the machines' directory and the store, as a test reads them."""

    def __init__(self, directory: Path, db: str) -> None:
        super().__init__(db)
        self.directory = directory

    def events(self) -> list[str]:
        path = self.directory / "events"
        return path.read_text().splitlines() if path.exists() else []

    def starts(self) -> list[str]:
        return [line.split()[1] for line in self.events() if line.startswith("start ")]

    def most_live(self) -> int:
        """The most machines that were up at once, by the scripts' own log."""
        live = most = 0
        for line in self.events():
            live += 1 if line.startswith("start ") else -1
            most = max(most, live)
        return most

    def agent_pid(self, provider_id: str) -> int:
        return int((self.directory / f"{provider_id}.pid").read_text())

    def kill_all(self) -> None:
        for pid_file in self.directory.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
