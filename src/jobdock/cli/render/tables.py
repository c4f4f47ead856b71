"""The CLI's tables: borderless, bold headers, one row a line, never wider
than the terminal by soft wrapping. Imports rich only, when a table is
printed (the CLI starts without it)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import OverflowMethod


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    wrap: bool | Collection[str] = False,
    overflow: OverflowMethod = "ellipsis",
    styles: Mapping[str, Callable[[str], str]] | None = None,
    colour: bool = True,
) -> None:
    """Print ``rows`` under ``columns``. Cells of the columns in ``wrap``
    (all, for True) may wrap; the others are cut to fit with ``overflow``.
    A column in ``styles`` gives each cell the style its function returns,
    in colour only when ``colour``. Cells are text, never rich markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        wraps = wrap if isinstance(wrap, bool) else column in wrap
        table.add_column(column, no_wrap=not wraps, overflow=overflow)
    styled = [(styles or {}).get(column) for column in columns]
    for row in rows:
        table.add_row(
            *(
                Text(cell, style=style(cell) if style else "")
                for cell, style in zip(row, styled, strict=False)
            )
        )
    Console(soft_wrap=False, no_color=not colour).print(table)
