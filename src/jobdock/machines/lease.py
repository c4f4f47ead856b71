"""Which API server's autoscaler acts: the holder of the store's
``autoscaler`` lease, taken or renewed by one conditional UPDATE with an
expiry (store/machines.py), so that servers sharing one PostgreSQL need no
election of their own. A holder that stops renewing (crashed, cut off)
loses it once it expires; one that stops cleanly gives it up at once.

Imports the store protocol only.
"""

from __future__ import annotations

import logging

from jobdock.errors import JobdockError
from jobdock.store.protocol import MachineStore

_log = logging.getLogger(__name__)

#: The lease's name in the store.
AUTOSCALER_LEASE = "autoscaler"


class Lease:
    """One server's hold on a named lease."""

    def __init__(self, store: MachineStore, holder: str, seconds: float) -> None:
        self.store = store
        self.holder = holder
        self.seconds = seconds
        self.held = False

    async def renew(self, now: float) -> bool:
        """Take or renew the lease; whether this server holds it (a store
        error: not, until the next try)."""
        try:
            held = await self.store.take_lease(
                AUTOSCALER_LEASE, self.holder, now, now + self.seconds
            )
        except JobdockError as exc:
            _log.warning("autoscaler: cannot renew its lease: %s", exc)
            held = False
        if held != self.held:
            _log.info("autoscaler of %s %s", self.holder, "acts" if held else "stands by")
        self.held = held
        return held

    async def release(self) -> None:
        """Give the lease up (at shutdown), so that another server acts at once."""
        if not self.held:
            return
        self.held = False
        try:
            await self.store.release_lease(AUTOSCALER_LEASE, self.holder)
        except JobdockError as exc:
            _log.warning("autoscaler: cannot release its lease: %s", exc)
