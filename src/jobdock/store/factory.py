"""The one way to build the store that a :class:`~jobdock.settings.Settings`
names: the server, the worker and the CLI's store commands all use
:func:`open_store`, so that every setting of the store (its URL, SQLite's
``synchronous``) reaches it wherever it is opened.

Imports the settings and :mod:`jobdock.store.sql` (so SQLAlchemy): import
this module where the store is about to be used, not at start-up.
"""

from __future__ import annotations

from jobdock.settings import Settings
from jobdock.store.sql import SqlStore


def open_store(settings: Settings) -> SqlStore:
    """The store the settings name, not yet opened: ``async with
    open_store(settings) as store`` opens (and migrates) it, and closes it."""
    return SqlStore(settings.db_url, sqlite_synchronous=settings.sqlite_synchronous)


__all__ = ["open_store"]
