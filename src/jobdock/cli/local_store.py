"""Commands that work on the store itself, not through the server (``serve``'s
check, ``tokens``), run what they need here: the store opened with
:func:`jobdock.store.factory.open_store`, migrated, and closed again.

Imports the settings; the store (and SQLAlchemy) only when it is opened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from jobdock.cli.exits import fail, one_line
from jobdock.errors import JobdockError

if TYPE_CHECKING:
    from jobdock.settings import Settings
    from jobdock.store.protocol import Store

T = TypeVar("T")


def in_store(settings: Settings, use: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``use`` on the store the settings name (opened, migrated, closed);
    a store that cannot be opened stops the command with one line."""
    import asyncio  # on use: the CLI starts without it

    try:
        return asyncio.run(on_store(settings, use))
    except JobdockError as exc:
        fail(one_line(exc))


async def on_store(settings: Settings, use: Callable[[Store], Awaitable[T]]) -> T:
    """Await ``use`` on the store the settings name, opened for it."""
    from jobdock.store.factory import open_store

    async with open_store(settings) as store:
        return await use(store)
