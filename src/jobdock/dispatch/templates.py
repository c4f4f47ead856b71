"""Dispatch templates: named jq filters the operator configures, read once
at the server's start (a directory of ``NAME.jq`` files and the
``dispatch_templates`` setting). A template that does not compile stops the
start with a message naming it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import jq

from jobdock.dispatch._child import VARIABLES, wrap
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
        # Alone first, so that the message's line numbers are the file's.
        jq.compile(template.program, args=dict.fromkeys(VARIABLES))
        jq.compile(wrap(template.program))
    except ValueError as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"{where}: {message}") from None
