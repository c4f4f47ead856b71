"""The ``{{ ... }}`` references of a workflow document (docs/workflows.md).

Two kinds, nothing else (no expressions, no eval):

- ``{{ params.NAME }}``: a parameter of the workflow, replaced at submit;
- ``{{ steps.NAME.output }}`` or ``{{ steps.NAME.output.KEY.KEY }}``: the
  output of an earlier step (its stdout's last line, as JSON), replaced when
  the step that uses it is started.

A value that is not a string is written as compact JSON (``3``, ``true``,
``{"a":1}``). This module imports nothing of jobdock's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_REFERENCE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PARAM = re.compile(r"params\.([A-Za-z_][A-Za-z0-9_]*)")
_STEP = re.compile(r"steps\.([A-Za-z0-9][A-Za-z0-9_-]*)\.output((?:\.[A-Za-z0-9_-]+)*)")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``{{ ... }}``: ``kind`` is ``params`` or ``steps``; ``name`` the
    parameter or step; ``path`` the keys into a step's output."""

    kind: str
    name: str
    path: tuple[str, ...] = ()


class BadReference(ValueError):
    """A ``{{ ... }}`` that is not one of the references this syntax has, or
    a value that cannot be looked up."""


def parse(text: str) -> Reference:
    """The reference written inside ``{{ }}``; raises BadReference."""
    inner = text.strip()
    if match := _PARAM.fullmatch(inner):
        return Reference("params", match.group(1))
    if match := _STEP.fullmatch(inner):
        path = tuple(part for part in match.group(2).split(".") if part)
        return Reference("steps", match.group(1), path)
    raise BadReference(
        f"'{{{{{text}}}}}' is not a reference (use params.NAME or steps.NAME.output[.KEY])"
    )


def references(value: Any, where: str = "") -> Iterator[tuple[str, Reference]]:
    """Every reference in the strings of a JSON value, with the dotted path of
    the field holding it; raises BadReference (naming the field) for one
    that is not valid."""
    if isinstance(value, str):
        for match in _REFERENCE.finditer(value):
            try:
                yield where, parse(match.group(1))
            except BadReference as exc:
                raise BadReference(f"{where}: {exc}") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from references(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from references(item, f"{where}.{index}" if where else str(index))


def as_text(value: Any) -> str:
    """How a value is written into a string."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render(value: Any, lookup: Callable[[Reference], Any], kinds: tuple[str, ...]) -> Any:
    """A copy of a JSON value with the references of ``kinds`` replaced by
    what ``lookup`` gives; references of other kinds stay as they are."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            reference = parse(match.group(1))
            if reference.kind not in kinds:
                return match.group(0)
            return as_text(lookup(reference))

        return _REFERENCE.sub(replace, value)
    if isinstance(value, dict):
        return {key: render(item, lookup, kinds) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, lookup, kinds) for item in value]
    return value


def output_value(output: Any, reference: Reference) -> Any:
    """The part of a step's output a reference names; raises BadReference."""
    value = output
    for key in reference.path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            dotted = ".".join(("steps", reference.name, "output", *reference.path))
            raise BadReference(f"{dotted}: the output of step {reference.name!r} has no {key!r}")
    return value
