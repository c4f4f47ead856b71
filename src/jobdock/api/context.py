"""What a route takes from the app it runs in: the store and the settings
that the lifespan (api/app.py) put on ``app.state``."""

from __future__ import annotations

from fastapi import Request

from jobdock.settings import Settings
from jobdock.store.protocol import Store


def store_of(request: Request) -> Store:
    """The app's open store."""
    store: Store = request.app.state.store
    return store


def settings_of(request: Request) -> Settings:
    """The server's settings."""
    settings: Settings = request.app.state.settings
    return settings
