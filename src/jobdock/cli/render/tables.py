"""The CLI's tables on a terminal: borderless, bold headers, columns two
spaces apart, never wider than the terminal (``COLUMNS``, else its size):
the columns that may wrap are narrowed first and their cells wrapped onto
more lines, then the others are cut (``…``) or folded.

Plain Python, as ``docker ps`` and ``kubectl get`` print theirs: a table is
what nearly every command prints, and rich would double the start-up of
``jobdock ps`` (bench/cli_startup.py). Imports nothing of jobdock's.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Literal

#: How a cell that may not wrap is made to fit: cut with an ellipsis, or
#: folded onto more lines.
Overflow = Literal["ellipsis", "fold"]

_GAP = "  "
#: The narrowest a column is made (or its header's width, if less).
_MIN_WIDTH = 6
#: SGR codes of the style words STATE_STYLES uses.
_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
}


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    wrap: bool | Collection[str] = False,
    overflow: Overflow = "ellipsis",
    styles: Mapping[str, Callable[[str], str]] | None = None,
    colour: bool = True,
) -> None:
    """Print ``rows`` under ``columns``. Cells of the columns in ``wrap``
    (all, for True) may wrap; the others are cut to fit with ``overflow``.
    A column in ``styles`` gives each cell the style its function returns
    (words such as ``bold red``), in colour only when ``colour``."""
    cells = [[_one_line(cell) for cell in row] for row in rows]
    wraps = [wrap if isinstance(wrap, bool) else column in wrap for column in columns]
    widths = _fit(columns, cells, wraps, shutil.get_terminal_size().columns)
    styled = [(styles or {}).get(column) for column in columns]
    out = [_line([_sgr("bold", column) for column in _cut_header(columns, widths)], widths)]
    for row in cells:
        parts = [
            _lay(cell, width, wraps[i], overflow)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        looks = [
            style(cell) if style is not None and colour else ""
            for cell, style in zip(row, styled, strict=False)
        ]
        for depth in range(max((len(part) for part in parts), default=1)):
            plain = [part[depth] if depth < len(part) else "" for part in parts]
            line = [
                _sgr(look, text) if text else "" for look, text in zip(looks, plain, strict=False)
            ]
            out.append(_line(line, widths, plain=plain))
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def cell_width(text: str) -> int:
    """How many terminal columns ``text`` takes (East Asian wide characters two)."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _one_line(cell: str) -> str:
    return " ".join(cell.replace("\t", " ").splitlines()) if cell else ""


def _fit(columns: Sequence[str], rows: list[list[str]], wraps: list[bool], total: int) -> list[int]:
    """Each column's width: its widest cell, narrowed until the table fits
    ``total`` columns, wrapping columns first and the widest first."""
    widths = [
        max([cell_width(column), *(cell_width(row[i]) for row in rows if i < len(row))])
        for i, column in enumerate(columns)
    ]
    room = total - len(_GAP) * (len(columns) - 1)
    for narrowable in ([i for i, w in enumerate(wraps) if w], range(len(columns))):
        order = list(narrowable)
        while sum(widths) > room and order:
            widest = max(order, key=lambda i: widths[i])
            floor = min(_MIN_WIDTH, widths[widest])
            if widths[widest] <= floor:
                order.remove(widest)
                continue
            widths[widest] -= 1
    return widths


def _cut_header(columns: Sequence[str], widths: list[int]) -> list[str]:
    return [_cut(column, width) for column, width in zip(columns, widths, strict=False)]


def _lay(cell: str, width: int, wraps: bool, overflow: Overflow) -> list[str]:
    """The lines ``cell`` takes in a column ``width`` wide."""
    if cell_width(cell) <= width:
        return [cell]
    if wraps:
        return textwrap.wrap(cell, width, break_on_hyphens=False) or [""]
    if overflow == "fold":
        return [cell[at : at + width] for at in range(0, len(cell), width)]
    return [_cut(cell, width)]


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, ending in ``…`` where it was cut."""
    if cell_width(text) <= width:
        return text
    kept = ""
    for ch in text:
        if cell_width(kept + ch) > width - 1:
            break
        kept += ch
    return kept + "…"


def _sgr(style: str, text: str) -> str:
    """``text`` in the style's ANSI SGR codes (unknown words are ignored)."""
    codes = [_SGR[word] for word in style.split() if word in _SGR]
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m" if codes else text


def _line(parts: list[str], widths: list[int], plain: list[str] | None = None) -> str:
    """One line of the table: each part padded to its column's width (by
    the width of its ``plain`` text, without escape codes)."""
    shown = plain if plain is not None else [_strip(part) for part in parts]
    padded = [
        part + " " * (width - cell_width(text))
        for part, text, width in zip(parts, shown, widths, strict=False)
    ]
    return _GAP.join(padded).rstrip()


def _strip(text: str) -> str:
    """``text`` without the one SGR wrapping :func:`_sgr` gives it."""
    if text.startswith("\x1b["):
        return text[text.index("m") + 1 : -len("\x1b[0m")]
    return text
