"""Statements compiled once per database dialect and run as driver SQL.

Building and executing a SQLAlchemy Core statement costs about 200 us of
Python; running its compiled text through ``exec_driver_sql`` costs about
10 us. The statements on the path of every job (submit, claim, start, log,
finish) are written as Core constructs with named ``bindparam``s, compiled
here once for each dialect, and then run with plain parameters. Values go in
and come out as the driver sees them: JSON as text, booleans as integers on
SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import ClauseElement, Connection, CursorResult
from sqlalchemy.sql.compiler import SQLCompiler


class Prepared:
    """A statement, compiled lazily for each dialect it runs on."""

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def _compile(self, conn: Connection) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        dialect = conn.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            result = self._build(dialect.name).compile(dialect=dialect)
            assert isinstance(result, SQLCompiler)
            order = tuple(result.positiontup or ()) if result.positional else None
            compiled = (result.string, order, dict(result.params))
            self._compiled[dialect.name] = compiled
        return compiled

    def _args(
        self, order: tuple[str, ...] | None, defaults: dict[str, Any], params: Mapping[str, Any]
    ) -> Any:
        merged = {**defaults, **params} if defaults else params
        if order is None:
            return dict(merged)
        return tuple(merged[name] for name in order)

    def run(self, conn: Connection, **params: Any) -> CursorResult[Any]:
        """Execute once with ``params``."""
        sql, order, defaults = self._compile(conn)
        return conn.exec_driver_sql(sql, self._args(order, defaults, params))

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row of parameters (executemany)."""
        sql, order, defaults = self._compile(conn)
        conn.exec_driver_sql(sql, [self._args(order, defaults, row) for row in rows])
