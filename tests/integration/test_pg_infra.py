"""The PostgreSQL server the tests start themselves (tests/pg.py), checked
with the driver alone, without jobdock's store."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

import psycopg
import pytest

from pg import PostgresServer


def tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return [row[0] for row in rows]


def test_the_server_accepts_connections_on_loopback_with_fast_settings(
    postgres: PostgresServer,
) -> None:
    with psycopg.connect(postgres.dsn()) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('fsync', 'full_page_writes', 'max_connections', 'listen_addresses')"
            ).fetchall()
        )
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    assert settings == {
        "fsync": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "listen_addresses": "127.0.0.1",
    }
    assert postgres.url("x") == f"postgresql+psycopg://postgres@127.0.0.1:{postgres.port}/x"
    assert len(str(postgres.socket_dir / f".s.PGSQL.{postgres.port}")) < 100


def test_a_new_database_is_empty_and_separate_from_the_others(postgres: PostgresServer) -> None:
    first = postgres.create_database()
    with psycopg.connect(postgres.dsn(first)) as conn:
        conn.execute("CREATE TABLE jobs (id text PRIMARY KEY)")
    second = postgres.create_database()
    assert second != first
    assert tables(postgres.dsn(second)) == []
    assert tables(postgres.dsn(first)) == ["jobs"]


def test_pg_url_gives_each_test_its_own_empty_database(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    assert tables(dsn) == []
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE left_behind (x int)")


def test_a_dropped_database_disconnects_its_clients(postgres: PostgresServer) -> None:
    name = postgres.create_database()
    conn = psycopg.connect(postgres.dsn(name))
    try:
        postgres.drop_database(name)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()


def test_committed_data_survives_a_kill_and_restart(own_postgres: PostgresServer) -> None:
    name = own_postgres.create_database()
    port = own_postgres.port
    with psycopg.connect(own_postgres.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        for i in range(100):
            conn.execute("INSERT INTO t VALUES (%s)", (i,))
    client = psycopg.connect(own_postgres.dsn(name))
    old_pid = own_postgres.pid

    own_postgres.kill()

    assert own_postgres.pid is None
    with pytest.raises(psycopg.OperationalError):
        client.execute("SELECT 1")
    client.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(own_postgres.dsn(name), connect_timeout=2)

    own_postgres.start()

    assert own_postgres.port == port
    assert own_postgres.pid not in (None, old_pid)
    with psycopg.connect(own_postgres.dsn(name)) as conn:
        assert conn.execute("SELECT count(*), sum(x) FROM t").fetchone() == (100, 4950)


def test_a_stopped_server_starts_again_on_its_data(own_postgres: PostgresServer) -> None:
    name = own_postgres.create_database()
    with psycopg.connect(own_postgres.dsn(name)) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    own_postgres.stop()
    assert own_postgres.pid is None
    own_postgres.start()
    assert tables(own_postgres.dsn(name)) == ["kept"]


def test_close_stops_the_server_and_deletes_its_directory(postgres_bindir: Path) -> None:
    server = PostgresServer(postgres_bindir).start()
    pid, base = server.pid, server.base
    assert pid is not None
    server.close()
    assert not base.exists()
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0
    server.close()  # a second time does nothing


@pytest.mark.skipif(os.geteuid() != 0, reason="only root must switch to the postgres user")
def test_as_root_the_server_runs_as_the_postgres_user(postgres: PostgresServer) -> None:
    assert postgres.pid is not None
    uid = int(Path(f"/proc/{postgres.pid}/status").read_text().split("Uid:")[1].split()[0])
    assert pwd.getpwuid(uid).pw_name == "postgres"
