"""Job files: a job spec kept in a file (YAML or JSON, the API's schema)
next to the code it builds, run by ``jobdock run -f FILE`` on a server or
with ``--local`` here.

A file may declare ``variables``: each a name and its default (``null``:
none; the caller must set it). ``${NAME}`` in any string of the file is
replaced by the caller's environment variable NAME, else the default, and
only declared names are replaced: anything else the environment holds never
reaches the job by surprise, and an undeclared ``${NAME}`` is an error
(``$${`` writes a literal ``${``). ``--set FIELD=VALUE`` then sets one
field (dotted for a nested one: ``resources.memory=1g``, ``labels.team=ci``;
the value is text, checked as the field's type as the API checks a JSON
string, but ``[...]`` and ``{...}`` are read as YAML, ``command=[make,
test]``, and ``null`` unsets). Errors name the file, the line and the field.

Imports the documents' bounded parsers and the models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from jobdock.documents import load_yaml
from jobdock.errors import ConfigError, InvalidJson
from jobdock.models import JobSpec
from jobdock.models.parsing import describe_error

if TYPE_CHECKING:
    import yaml

#: The largest job file read.
MAX_FILE_BYTES = 1024 * 1024
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class JobFileError(ConfigError):
    """A job file that cannot be read, or that gives no valid job spec."""


def load_job_file(
    path: str | Path, environ: Mapping[str, str], overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """The job spec of the file at ``path`` (JSON-ready, checked as the API
    checks it), its variables from ``environ``, then ``overrides``
    (``FIELD=VALUE``) set. Raises JobFileError naming file, line and field."""
    name = str(path)
    text = _read(Path(path))
    try:
        document = load_yaml(text, name)
    except InvalidJson as exc:
        raise JobFileError(exc.message) from None
    if not isinstance(document, dict):
        raise JobFileError(f"{name}: a job file is a mapping of job spec fields (command: ...)")
    lines = _Lines(text)
    variables = _variables(document.pop("variables", None) or {}, name, environ, lines)
    spec: dict[str, Any] = _expand(document, variables, name, lines, ())
    given = [_set(spec, override) for override in overrides]
    try:
        JobSpec.model_validate(spec)
    except ValidationError as exc:
        error = exc.errors()[0]
        _, message = describe_error(error)
        loc = tuple(str(part) for part in error.get("loc", ()))
        overridden = any(loc[: len(path)] == path for path in given)
        place = "--set" if overridden else lines.where(name, tuple(error.get("loc", ())))
        raise JobFileError(f"{place}: {message}") from None
    return spec


def _read(path: Path) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise JobFileError(f"cannot read job file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise JobFileError(f"{path}: a job file is at most {MAX_FILE_BYTES} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise JobFileError(f"{path}: not UTF-8 text") from None


def _variables(
    declared: Any, name: str, environ: Mapping[str, str], lines: _Lines
) -> dict[str, str]:
    """Each declared variable's value: the environment's, else its default."""
    if not isinstance(declared, dict):
        raise JobFileError(
            f"{lines.where(name, ('variables',))}: variables is a mapping of NAME: default"
        )
    values: dict[str, str] = {}
    for variable, default in declared.items():
        where = lines.where(name, ("variables", variable))
        if not isinstance(variable, str) or not _NAME.fullmatch(variable):
            raise JobFileError(f"{where}: {variable!r} is not a variable name")
        if variable in environ:
            values[variable] = environ[variable]
        elif default is None:
            raise JobFileError(f"{where}: variable {variable} has no default and is not set")
        elif isinstance(default, dict | list):
            raise JobFileError(f"{where}: the default of {variable} must be a scalar")
        else:
            values[variable] = default if isinstance(default, str) else _scalar(default)
    return values


def _scalar(value: Any) -> str:
    """A YAML scalar as the text it stands for (``true``, ``3``, ``1.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _expand(
    value: Any, variables: Mapping[str, str], name: str, lines: _Lines, loc: tuple[Any, ...]
) -> Any:
    """``value`` with ``${NAME}`` replaced in every string of it."""
    if isinstance(value, dict):
        return {
            key: _expand(item, variables, name, lines, (*loc, key)) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_expand(item, variables, name, lines, (*loc, i)) for i, item in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        variable = match.group(1)
        if variable not in variables:
            field = ".".join(str(part) for part in loc)
            raise JobFileError(
                f"{lines.where(name, loc)}: {field}: ${{{variable}}} is not declared "
                "under variables"
            )
        return variables[variable]

    return _VARIABLE.sub(replace, value)


def _set(spec: dict[str, Any], override: str) -> tuple[str, ...]:
    """Set the field ``FIELD=VALUE`` names (dotted: a nested field); its path."""
    import yaml

    field, sep, text = override.partition("=")
    parts = field.split(".")
    if not sep or not all(parts):
        raise JobFileError(f"--set {override!r} is not FIELD=VALUE (e.g. timeout=10m)")
    value: Any = text
    if text in ("null", "~"):
        value = None
    elif text.startswith(("[", "{")):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise JobFileError(f"--set {field}: {text!r} is not a YAML list or mapping") from None
    target = spec
    for part in parts[:-1]:
        inner = target.setdefault(part, {})
        if not isinstance(inner, dict):
            raise JobFileError(f"--set {field}: {part} is not a mapping in the job file")
        target = inner
    target[parts[-1]] = value
    return tuple(parts)


class _Lines:
    """Where each field of a YAML document is: its line, for messages."""

    def __init__(self, text: str) -> None:
        import yaml

        try:
            self._root: yaml.Node | None = yaml.compose(
                text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            )
        except yaml.YAMLError:  # already refused by load_yaml, or not here
            self._root = None

    def where(self, name: str, loc: tuple[Any, ...]) -> str:
        """``FILE:LINE`` of the field at ``loc`` (of the deepest part of it
        that the file writes; just ``FILE`` where it writes none)."""
        line = self._line(loc)
        return f"{name}:{line}" if line is not None else name

    def _line(self, loc: tuple[Any, ...]) -> int | None:
        import yaml

        node = self._root
        line = None if node is None else node.start_mark.line + 1
        for part in loc:
            found: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key, item in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        found = item
                        line = key.start_mark.line + 1
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                found = node.value[part]
                line = found.start_mark.line + 1
            if found is None:
                break
            node = found
        return line
