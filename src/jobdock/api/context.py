"""What a route takes from the app it runs in: the store, the settings and
what its worker cannot enforce, that the lifespan (api/app.py) put on
``app.state``."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import State

from jobdock.settings import Settings
from jobdock.store.protocol import Store
from jobdock.submit import Missing


def store_of(request: Request) -> Store:
    """The app's open store."""
    store: Store = request.app.state.store
    return store


def settings_of(request: Request) -> Settings:
    """The server's settings."""
    settings: Settings = request.app.state.settings
    return settings


def missing_of(state: State) -> Missing | None:
    """What the server's embedded worker cannot enforce of a process job
    (see Worker.missing); None when the server runs no worker."""
    missing: Missing | None = getattr(state, "missing", None)
    return missing
