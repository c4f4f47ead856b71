"""Dispatch templates: named jq filters the operator configures, read once
at the server's start (a directory of ``NAME.jq`` files and the
``dispatch_templates`` setting). A template that does not compile stops the
start with a message naming it."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import jq

from jobdock.dispatch._child import EXTRAS, HASHES, HIDDEN, VARIABLES, wrap
from jobdock.errors import ConfigError
from jobdock.settings import Settings

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: ``/job/run`` is ConJob's route (api/conjob.py); a template of that name
#: could never be reached by ``POST /job/NAME``.
RESERVED = frozenset({"run"})


@dataclass(frozen=True, slots=True)
class Template:
    """A named jq filter, and where it was defined (a file, or ``config``)."""

    name: str
    program: str
    source: str


def load_templates(settings: Settings) -> dict[str, Template]:
    """The server's templates by name; raises ConfigError for a missing
    directory, a bad or duplicate name, or a filter that does not compile."""
    found: dict[str, Template] = {}
    directory = settings.dispatch_templates_dir
    if directory is not None:
        if not directory.is_dir():
            raise ConfigError(f"dispatch_templates_dir {directory} is not a directory")
        for path in sorted(directory.glob("*.jq")):
            try:
                program = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"dispatch template {path}: cannot read it: {exc}") from None
            found[path.stem] = Template(path.stem, program, str(path))
    for name, program in settings.dispatch_templates.items():
        if name in found:
            raise ConfigError(
                f"dispatch template {name!r} is defined twice ({found[name].source} and config)"
            )
        found[name] = Template(name, program, "config")
    for template in found.values():
        _check(template)
    default = settings.dispatch_default_template
    if default is not None and default not in found:
        raise ConfigError(f"dispatch_default_template {default!r}: no template of that name")
    return found


def _check(template: Template) -> None:
    where = f"dispatch template {template.name!r} ({template.source})"
    if not _NAME.fullmatch(template.name):
        raise ConfigError(
            f"{where}: the name must be 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if template.name in RESERVED:
        raise ConfigError(f"{where}: the name {template.name!r} is reserved (ConJob's /job/run)")
    try:
        # Alone first (the extras on the first line), so that the message's
        # line numbers are the file's.
        jq.compile(EXTRAS + template.program, args=dict.fromkeys((*VARIABLES, *HIDDEN)))
        jq.compile(wrap(template.program))
    except ValueError as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"{where}: {message}") from None
    # jq compiles any @name and fails at run time when it is no format it
    # has: such a filter would fail on every request, so it is refused now.
    unknown = sorted(set(formats_in(template.program)) - set(HASHES) - set(_jq_formats()))
    if unknown:
        raise ConfigError(
            f"{where}: @{unknown[0]} is no format jobdock's jq has (it has "
            + ", ".join(f"@{name}" for name in sorted({*_jq_formats(), *HASHES}))
            + ")"
        )


#: Formats a jq may have; which this one has is asked of it (``_jq_formats``).
_CANDIDATES = (
    "text", "json", "html", "uri", "urid", "csv", "tsv", "sh",
    "base64", "base64d", "base32", "base32d",
)  # fmt: skip
_FORMAT = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")


@functools.cache
def _jq_formats() -> frozenset[str]:
    """The formats this jq has (a format it lacks says so when run)."""
    found = set()
    for name in _CANDIDATES:
        try:
            jq.compile(f'[""] | @{name}').input_value(None).first()
        except ValueError as exc:
            if "not a valid format" in str(exc):
                continue
        found.add(name)
    return frozenset(found)


def formats_in(program: str) -> list[str]:
    """The names of the ``@format``s a jq program uses, outside its strings
    and comments (but inside the ``\\(...)`` of a string)."""
    return [match.group(1) for match in _FORMAT.finditer(_code_of(program))]


def _code_of(program: str) -> str:
    """``program`` with its string literals' text and its comments blanked
    out; what a string interpolates (``\\(...)``) is kept as code."""
    out: list[str] = []
    # Each entry: the parentheses open in the code of one interpolation.
    interpolations: list[int] = []
    in_string = False
    i = 0
    while i < len(program):
        char = program[i]
        if in_string:
            if char == "\\" and program[i + 1 : i + 2] == "(":
                interpolations.append(0)
                in_string = False
                i += 2
                continue
            i += 2 if char == "\\" else 1
            in_string = char != '"'
            out.append(" ")
            continue
        if char == "#":
            end = program.find("\n", i)
            i = len(program) if end < 0 else end
            continue
        if char == '"':
            in_string = True
        elif char == "(" and interpolations:
            interpolations[-1] += 1
        elif char == ")" and interpolations:
            if interpolations[-1] == 0:
                interpolations.pop()
                in_string = True
                i += 1
                continue
            interpolations[-1] -= 1
        out.append(char)
        i += 1
    return "".join(out)
