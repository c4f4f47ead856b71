"""Statements compiled once per database dialect and run on the driver.

Building and executing a SQLAlchemy Core statement costs about 200 us of
Python; running its compiled text on the driver's cursor costs a few. The
statements on the path of every job (submit, claim, start, log, finish) are
written as Core constructs with named ``bindparam``s, compiled here once for
each dialect, and then run with plain parameters inside the transaction
that the SQLAlchemy ``Connection`` holds. Values go in and come out as the
driver sees them: JSON as text, booleans as integers on SQLite.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import ClauseElement, Connection
from sqlalchemy.sql.compiler import SQLCompiler


class Result:
    """The rows of one execution, with columns as attributes."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows


class _Compiled:
    __slots__ = ("defaults", "order", "row", "sql")

    def __init__(self, sql: str, order: tuple[str, ...] | None, defaults: dict[str, Any]) -> None:
        self.sql = sql
        self.order = order
        self.defaults = defaults
        self.row: Any = None


class Prepared:
    """A statement, compiled lazily for each dialect it runs on."""

    def __init__(self, build: Callable[[str], Any]) -> None:
        #: The statement for a dialect, as a Core construct.
        self.build = build
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, conn: Connection) -> _Compiled:
        dialect = conn.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement: ClauseElement = self.build(dialect.name)
            result = statement.compile(dialect=dialect)
            assert isinstance(result, SQLCompiler)
            order = tuple(result.positiontup or ()) if result.positional else None
            compiled = _Compiled(result.string, order, dict(result.params))
            self._compiled[dialect.name] = compiled
        return compiled

    @staticmethod
    def _args(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        merged = {**compiled.defaults, **params} if compiled.defaults else params
        if compiled.order is None:
            return dict(merged)
        return tuple(merged[name] for name in compiled.order)

    def run(self, conn: Connection, **params: Any) -> Result:
        """Execute once with ``params`` in ``conn``'s transaction."""
        compiled = self._compile(conn)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, self._args(compiled, params))
            rows: list[Any] = []
            if cursor.description is not None:
                if compiled.row is None:
                    names = [column[0] for column in cursor.description]
                    compiled.row = namedtuple("Row", names, rename=True)  # type: ignore[misc]
                make = compiled.row._make
                rows = [make(row) for row in cursor.fetchall()]
            return Result(rows, cursor.rowcount)
        finally:
            cursor.close()

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row of parameters (executemany)."""
        compiled = self._compile(conn)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.sql, [self._args(compiled, row) for row in rows])
        finally:
            cursor.close()
