"""Option values the CLI parses itself: ``KEY=VALUE`` pairs and durations.
A bad one stops the command with exit status 2, naming the option.

Imports the foundation only (models) and :mod:`jobdock.cli.exits`.
"""

from __future__ import annotations

from jobdock.cli.exits import fail
from jobdock.models.units import parse_duration


def pairs(values: list[str] | None, what: str) -> dict[str, str]:
    """``KEY=VALUE`` items of the option ``what`` as a dict."""
    result = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{what} {item!r} is not KEY=VALUE", 2)
        result[key] = value
    return result


def duration(value: str | None, what: str) -> float | None:
    """The option ``what``'s duration (``30s``, ``10m``) in seconds, or None."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        fail(f"{what}: {exc}", 2)
