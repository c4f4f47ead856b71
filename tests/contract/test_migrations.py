"""The Alembic migration chain builds exactly the tables of
``jobdock.store.schema``, on every store backend (SQLite and PostgreSQL):
an empty database migrated to head, reflected, has the same tables, columns
(names, types as the dialect sees them, nullability), primary keys, foreign
keys, indexes and unique constraints as the schema's MetaData."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pprint import pformat
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, Index, UniqueConstraint, create_engine, inspect, text

from jobdock.store import Store
from jobdock.store.migrate import alembic_config, upgrade
from jobdock.store.schema import metadata


@pytest.fixture
def migrated(make_store: Callable[[], Store]) -> Iterator[Connection]:
    """A connection to a new, empty database migrated to head by the chain
    that servers run at start-up."""
    engine = create_engine(make_store().url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _differences(conn: Connection) -> list[Any]:
    # Alembic's autogenerate comparison: tables, columns with their types and
    # nullability, indexes, unique constraints and foreign keys (server
    # defaults are left out: each dialect reflects them in its own words).
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _primary_keys(conn: Connection) -> dict[str, list[str]]:
    # Autogenerate does not compare primary keys: the inspector does.
    inspector = inspect(conn)
    return {
        name: inspector.get_pk_constraint(name)["constrained_columns"]
        for name in sorted(inspector.get_table_names())
        if name != "alembic_version"
    }


def _reflected_uniques(conn: Connection) -> dict[str, set[tuple[str, ...]]]:
    # Autogenerate cannot see an unnamed unique constraint go on SQLite
    # (Column(unique=True) makes one): the columns each unique constraint or
    # unique index covers, as the inspector reflects them.
    inspector = inspect(conn)
    uniques: dict[str, set[tuple[str, ...]]] = {}
    for name in inspector.get_table_names():
        if name == "alembic_version":
            continue
        found = [c["column_names"] for c in inspector.get_unique_constraints(name)]
        found += [i["column_names"] for i in inspector.get_indexes(name) if i["unique"]]
        uniques[name] = {tuple(str(column) for column in columns) for columns in found}
    return uniques


def _declared_uniques() -> dict[str, set[tuple[str, ...]]]:
    uniques: dict[str, set[tuple[str, ...]]] = {}
    for table in metadata.tables.values():
        found = [
            [column.name for column in constraint.columns]
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        ]
        found += [
            [column.name for column in index.expressions if isinstance(column, Column)]
            for index in table.indexes
            if isinstance(index, Index) and index.unique
        ]
        uniques[table.name] = {tuple(columns) for columns in found}
    return uniques


def test_the_migrations_build_exactly_the_schema(migrated: Connection) -> None:
    differences = _differences(migrated)

    assert differences == [], (
        f"the migrations at head differ from jobdock/store/schema.py "
        f"({migrated.dialect.name}; what a new migration would do):\n{pformat(differences)}"
    )


def test_the_migrations_give_every_table_the_schemas_primary_key(
    migrated: Connection,
) -> None:
    expected = {
        table.name: [column.name for column in table.primary_key.columns]
        for table in sorted(metadata.tables.values(), key=lambda t: t.name)
    }

    assert _primary_keys(migrated) == expected


def test_the_migrations_make_unique_what_the_schema_makes_unique(
    migrated: Connection,
) -> None:
    reflected, declared = _reflected_uniques(migrated), _declared_uniques()
    differing = {
        table: {
            "migrations": sorted(reflected.get(table, ())),
            "schema.py": sorted(declared.get(table, ())),
        }
        for table in sorted(reflected.keys() | declared.keys())
        if reflected.get(table) != declared.get(table)
    }

    assert differing == {}, (
        f"unique columns differ ({migrated.dialect.name}):\n{pformat(differing)}"
    )


def test_migration_0010_keeps_earlier_output_with_no_arrival_time_and_goes_back(
    make_store: Callable[[], Store],
) -> None:
    engine = create_engine(make_store().url)
    try:
        with engine.connect() as conn:
            command.upgrade(alembic_config(conn), "0009")
            conn.execute(
                text(
                    "INSERT INTO log_chunks (job_id, attempt, seq, stream, end_offset,"
                    " merged_end, data) VALUES ('j', 1, 1, 1, 4, 4, :data)"
                ),
                {"data": b"old\n"},
            )
            conn.commit()
            command.upgrade(alembic_config(conn), "0010")
            conn.commit()
            upgraded = conn.execute(text("SELECT data, at FROM log_chunks")).one()
            command.downgrade(alembic_config(conn), "0009")
            conn.commit()
            columns = [c["name"] for c in inspect(conn).get_columns("log_chunks")]
            kept = conn.execute(text("SELECT data FROM log_chunks")).scalar_one()
    finally:
        engine.dispose()

    assert (bytes(upgraded.data), upgraded.at) == (b"old\n", None)
    assert "at" not in columns
    assert bytes(kept) == b"old\n"
