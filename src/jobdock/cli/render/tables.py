"""The CLI's tables: borderless, bold headers, one row a line, never wider
than the terminal by soft wrapping. Imports rich only, when a table is
printed (the CLI starts without it)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import OverflowMethod


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    wrap: bool | Collection[str] = False,
    overflow: OverflowMethod = "ellipsis",
) -> None:
    """Print ``rows`` under ``columns``. Cells of the columns in ``wrap``
    (all, for True) may wrap; the others are cut to fit with ``overflow``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        wraps = wrap if isinstance(wrap, bool) else column in wrap
        table.add_column(column, no_wrap=not wraps, overflow=overflow)
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=False).print(table)
