"""The store label on containers: one value for every spelling of one store,
another for another store, and never the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobdock.runtimes.container import store_identity


def test_one_sqlite_file_is_one_store_however_its_path_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = store_identity(f"sqlite:///{tmp_path / 'jobdock.db'}")

    assert store_identity("sqlite:///jobdock.db") == absolute
    assert store_identity(f"sqlite:///{tmp_path / 'x' / '..' / 'jobdock.db'}") == absolute
    assert store_identity(f"sqlite:///{tmp_path / 'other.db'}") != absolute


def test_a_servers_store_is_named_by_where_it_is_not_by_password_or_driver() -> None:
    url = "postgresql://jobdock:secret@DB.example:5432/jobs"
    identity = store_identity(url)

    assert store_identity("postgresql+psycopg://jobdock:other@db.example:5432/jobs") == identity
    assert store_identity("postgresql://jobdock:secret@db.example:5432/other") != identity
    assert "secret" not in identity and len(identity) == 32
