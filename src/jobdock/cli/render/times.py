"""Times and spans as the CLI prints them: ``3.2s``, ``5m ago``, an
ISO 8601 local time. Imports nothing of jobdock's."""

from __future__ import annotations

import time
from datetime import datetime


def span(seconds: float) -> str:
    """A span in one unit, rounded: ``250ms``, ``3.2s``, ``45s``, ``12m``, ``5h``, ``3d``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def ago(moment: datetime | None) -> str:
    """How long ago ``moment`` was (``5m ago``); empty for None."""
    if moment is None:
        return ""
    seconds = max(0.0, time.time() - moment.timestamp())
    return f"{span(seconds)} ago"


def since(moment: datetime) -> str:
    """The span from ``moment`` to now."""
    return span(time.time() - moment.timestamp())


def local_time(moment: datetime | None) -> str:
    """``moment`` in local time to the second, ISO 8601; ``-`` for None."""
    return "-" if moment is None else moment.astimezone().isoformat(timespec="seconds")
