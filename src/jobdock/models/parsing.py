"""Reading a spec: a JobSpec from a JSON document, and pydantic's
complaints said as jobdock's errors (InvalidJson, or InvalidSpec naming
the first bad field), in the one wording every door uses.

Imports only jobdock.errors and its sibling jobdock.models.spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from jobdock.errors import InvalidJson, InvalidSpec
from jobdock.models.spec import JobSpec

#: The deepest a document may nest (objects and arrays within each other).
MAX_DEPTH = 64


def too_deep(what: str = "the body") -> InvalidJson:
    """The error for a document nested deeper than MAX_DEPTH."""
    return InvalidJson(f"{what} is nested more than {MAX_DEPTH} levels deep")


def not_json(message: str, what: str = "the body") -> InvalidJson:
    """The error for a document pydantic's JSON parser refused with
    ``message`` (its own bound on nesting, 200 levels, says "recursion")."""
    if "recursion limit" in message:
        return too_deep(what)
    return InvalidJson(f"{what} is not valid JSON: {message}")


def parse_spec(body: bytes) -> JobSpec:
    """A JobSpec from a JSON document; raises InvalidJson, or InvalidSpec
    naming the first bad field."""
    try:
        return JobSpec.model_validate_json(body)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise not_json(exc.errors()[0]["msg"]) from None
        raise invalid_spec(exc) from None


_NAMED_FIELD = re.compile(r"([a-z_]+(?:\.[a-z0-9_]+)*): ")


def describe_error(error: Mapping[str, Any], skip: int = 0) -> tuple[str | None, str]:
    """The dotted field name and a one-line message of one pydantic error
    (``skip`` leading parts of its location are dropped)."""
    field = ".".join(str(part) for part in tuple(error.get("loc", ()))[skip:]) or None
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    named = _NAMED_FIELD.match(message)
    if named and (field is None or error.get("type") == "value_error"):
        # A check across fields names the one it is about: "command: ..."
        # (within the field it was raised for, if any: "job.command").
        inner = named.group(1)
        field = f"{field}.{inner}" if field else inner
        message = message[named.end() :]
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    elif error.get("type") == "missing":
        message = "field required"
    return field, f"{field}: {message}" if field else message


def invalid_spec(exc: ValidationError) -> InvalidSpec:
    """The InvalidSpec for pydantic's first complaint about a spec."""
    field, message = describe_error(exc.errors()[0])
    return InvalidSpec(message, field=field)
