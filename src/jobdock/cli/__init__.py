"""The ``jobdock`` command line. Client commands talk to the server only
through :class:`jobdock.Client`; ``serve`` and ``worker`` run the server
itself; ``tokens`` and ``db`` work on its store directly.

The command tree and :func:`main` are in :mod:`jobdock.cli.commands`, the
commands in one module per group, what they print in
:mod:`jobdock.cli.render`.

The command tree loads only typer and the commands' modules; what a command
needs (the client, the settings, rich) it imports when it runs, so that
``jobdock ps`` starts fast (docs/architecture.md, "The CLI's start-up").
"""

import sys

# httpx imports its own command line (click, rich, pygments: a third of its
# import time) whenever click is installed; the jobdock CLI never runs it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from jobdock.cli.commands import app, main  # noqa: E402
from jobdock.cli.exits import exit_code_of  # noqa: E402

__all__ = ["app", "exit_code_of", "main"]
