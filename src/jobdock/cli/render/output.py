"""How a listing command prints: ``-o json`` and ``-o yaml`` (the records as
the API returns them), ``-o wide`` (the table with more columns), or the
table. A table on a terminal is drawn by :func:`.tables.print_table`, with
each state in its colour unless ``NO_COLOR`` is set (https://no-color.org);
anywhere else (a pipe, a file) it is plain text, tab-separated, one row a
line under the header line, never wrapped or cut, for ``cut``, ``awk`` and
``sort``. Imports pydantic's BaseModel for typing only; yaml is loaded by
the format that needs it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import typer

from jobdock.cli.exits import fail

if TYPE_CHECKING:
    from pydantic import BaseModel

    from jobdock.cli.render.tables import Overflow

#: The ``-o`` option of the listing commands.
output_option = typer.Option(
    "--output", "-o", help="json, yaml, or wide (the table with more columns)."
)

#: The colour of each state a table shows (jobs, steps, workflows, schedules, machines).
STATE_STYLES = {
    "queued": "blue",
    "scheduled": "blue",
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "reverting": "yellow",
    "cancelling": "yellow",
    "succeeded": "green",
    "active": "green",
    "up": "green",
    "failed": "red",
    "revert_failed": "bold red",
    "lost": "red",
    "cancelled": "magenta",
    "reverted": "magenta",
    "paused": "yellow",
    "stopped": "dim",
    "requested": "blue",
    "booting": "cyan",
    "ready": "green",
    "draining": "yellow",
}


def output_format(value: str | None, allowed: Sequence[str] = ("json", "yaml", "wide")) -> str:
    """The ``-o`` a user gave, checked: one of ``allowed``, or ``""`` for the default."""
    if value is None:
        return ""
    if value not in allowed:
        fail(f"-o {value!r} is not one of {', '.join(allowed)}", 2)
    return value


def print_documents(data: Any, output: str) -> None:
    """``data`` (JSON-ready: from ``model_dump(mode="json")``) as JSON or YAML."""
    if output == "yaml":
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    else:
        typer.echo(json.dumps(data, indent=2))


def print_records(records: Iterable[BaseModel], output: str) -> bool:
    """Print ``records`` as a JSON or YAML list for ``-o json``/``yaml`` and
    return True; False for a table format (the caller prints the table)."""
    if output not in ("json", "yaml"):
        return False
    print_documents([record.model_dump(mode="json") for record in records], output)
    return True


def colour_allowed() -> bool:
    """Whether a table may use colour: stdout is a terminal and ``NO_COLOR``
    is unset or empty."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def state_style(cell: str) -> str:
    """The style of a status cell, by its first word (``running 3s``: cyan)."""
    word = cell.split(" ", 1)[0]
    return STATE_STYLES.get(word, "")


def show_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    wrap: bool | Collection[str] = False,
    overflow: Overflow = "ellipsis",
    styles: dict[str, Callable[[str], str]] | None = None,
) -> None:
    """A table on a terminal (``styles``: a column's cell -> its style, used
    when colour is allowed); tab-separated lines anywhere else."""
    if not sys.stdout.isatty():
        _print_plain(columns, rows)
        return
    from jobdock.cli.render.tables import print_table

    print_table(
        columns,
        rows,
        wrap=wrap,
        overflow=overflow,
        styles=styles or {},
        colour=colour_allowed(),
    )


def _print_plain(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    lines = ["\t".join(columns)]
    lines += ["\t".join(_plain(cell) for cell in row) for row in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _plain(cell: str) -> str:
    """A cell on one line with no tab in it: a tab or newline becomes a space."""
    return " ".join(cell.replace("\t", " ").splitlines()) if cell else ""
