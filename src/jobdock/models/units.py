"""Units a spec is written in: durations and sizes, parsed from numbers or
strings like ``10m`` and ``64m``, and the bounds every value stays within;
epoch seconds as datetimes. (The pydantic field types that parse them are
in :mod:`jobdock.models.fields`.)

Imports nothing of jobdock's, nor pydantic: the CLI parses its options with
these as it starts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


#: The longest duration jobdock takes (100 years): every time it is added
#: to stays a date the store can keep and the API can show.
MAX_DURATION = 100 * 365 * 86400.0
#: The largest size jobdock takes (8 PiB): an exact integer in JSON and in
#: the store's 64-bit columns.
MAX_SIZE = 1 << 53


def parse_duration(value: str | float | int) -> float:
    """Seconds from a number of seconds or a string like ``90``, ``1.5s``,
    ``10m``, ``1h30m`` or ``500ms``, at most :data:`MAX_DURATION`. Raises
    ValueError naming the problem."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a duration must be a number of seconds or a string like '10m'")
    if isinstance(value, int | float):
        # An int too large for a float is longer than any duration taken.
        seconds = float(value) if abs(value) <= MAX_DURATION else MAX_DURATION * 2
    else:
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"{value!r} is not a duration (use seconds or units ms, s, m, h, d: '1h30m')"
                ) from None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError("a duration must be a finite number of seconds, zero or more")
    if seconds > MAX_DURATION:
        raise ValueError(f"a duration must be at most {MAX_DURATION:.0f} seconds (100 years)")
    return seconds


def duration_or_none(value: Any) -> Any:
    """:func:`parse_duration` of ``value``, None for None."""
    return None if value is None else parse_duration(value)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int | float) -> int:
    """Bytes from a number or a string like ``512``, ``64m``, ``1.5G`` or
    ``256MiB`` (units are powers of 1024, as Docker's), at most
    :data:`MAX_SIZE`. Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a size must be a number of bytes or a string like '64m'")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("a size must be a whole number of bytes")
        size = int(value) if abs(value) <= MAX_SIZE else MAX_SIZE + 1
    elif isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(f"{value!r} is not a size (use bytes or units k, m, g, t: '64m')")
        amount = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
        size = int(amount) if amount <= MAX_SIZE else MAX_SIZE + 1
    if size < 0:
        raise ValueError("a size must not be negative")
    if size > MAX_SIZE:
        raise ValueError(f"a size must be at most {MAX_SIZE} bytes (8 PiB)")
    return size


#: The most cores a job may ask for (the kernel's CFS quota stays in range).
MAX_CPUS = 4096.0
#: The most processes a job may ask for (Linux's highest pid_max).
MAX_PIDS = 1 << 22
#: The largest count a spec may give (a signed 32-bit column).
MAX_COUNT = 2**31 - 1


def timestamp(epoch: float | None) -> datetime | None:
    """A UTC datetime from epoch seconds (the store keeps times as floats)."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)
