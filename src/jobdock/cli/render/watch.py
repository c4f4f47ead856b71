"""Watching a listing until Ctrl-C (``ps -w``, ``flow list -w``): redrawn in
place on a terminal; on a pipe or a file, printed again only when what it
shows has changed, after a blank line. Imports nothing of the CLI's."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

#: How often a watch looks again (seconds).
WATCH_EVERY = 1.0


def watch(
    look: Callable[[], _T],
    seen: Callable[[_T], object],
    show: Callable[[_T], None],
    every: float = WATCH_EVERY,
) -> None:
    """Call ``look`` every ``every`` seconds until Ctrl-C and ``show`` what
    it found: each time on a terminal (the screen cleared first), else when
    ``seen`` of it differs from the last one shown."""
    terminal = sys.stdout.isatty()
    shown: object = None
    first = True
    try:
        while True:
            found = look()
            now = seen(found)
            if terminal or first or now != shown:
                if terminal:
                    sys.stdout.write("\x1b[H\x1b[2J")
                elif not first:
                    sys.stdout.write("\n")
                show(found)
                sys.stdout.flush()
                shown, first = now, False
            time.sleep(every)
    except KeyboardInterrupt:
        return
