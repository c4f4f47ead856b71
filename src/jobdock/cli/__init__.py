"""The ``jobdock`` command line. Client commands talk to the server only
through :class:`jobdock.Client`; ``serve`` and ``worker`` run the server
itself; ``tokens`` and ``db`` work on its store directly.

The command tree and :func:`main` are in :mod:`jobdock.cli.commands`, the
commands in one module per group, what they print in
:mod:`jobdock.cli.render`.
"""

from jobdock.cli.commands import app, main
from jobdock.cli.exits import exit_code_of

__all__ = ["app", "exit_code_of", "main"]
