"""The field types of durations and sizes: a spec's or a setting's value
given as a number or a string like ``10m`` or ``64m``, parsed by
:mod:`jobdock.models.units` before pydantic checks its bounds.

Imports only jobdock.models.units.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from jobdock.models.units import duration_or_none, parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]
OptionalDuration = Annotated[float | None, BeforeValidator(duration_or_none)]
Size = Annotated[int, BeforeValidator(parse_size)]
