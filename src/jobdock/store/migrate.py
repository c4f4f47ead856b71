"""Schema migrations with Alembic, run programmatically.

``upgrade(engine)`` brings any database to the newest schema; servers and
workers do it at start-up and ``jobdock db upgrade`` does it on demand. On
PostgreSQL an advisory lock makes processes that start together take turns.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: The advisory lock held while migrating ("jobdock" as a number).
_LOCK = 0x6A6F62646F636B


def alembic_config(connection: Connection) -> Config:
    """An Alembic config for this package's migrations, on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    """Migrate the database behind ``engine`` to the newest schema."""
    with engine.connect() as conn:
        locking = conn.dialect.name == "postgresql"
        if locking:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_LOCK})")
            conn.commit()
        try:
            command.upgrade(alembic_config(conn), "head")
            conn.commit()
        finally:
            if locking:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_LOCK})")
                conn.commit()
