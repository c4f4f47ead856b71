"""What starting the ``jobdock`` command loads (issue 21: ``ps`` under
0.3 s): the command tree loads typer and the commands' modules, nothing a
command loads when it runs; ``ps`` loads httpx and its own listing, never
the client, its models or the settings (pydantic-settings), the server's
stack, the sandbox's runtimes or httpx's own CLI. (pydantic itself is loaded
by typer, which checks options with it.) The time itself is measured by
bench/cli_startup.py, not here."""

from __future__ import annotations

import json
import subprocess
import sys

#: What building the command tree (``--help``, ``--version``, a usage error,
#: a shell's completion request) must not load: what commands load when run.
NOT_AT_START = (
    "jobdock.client",
    "jobdock.cli.listing",
    "jobdock.models.jobs",
    "pydantic",
    "jobdock.settings",
    "pydantic_settings",
    "httpx",
    "anyio",
    "rich",
    "jobdock.sandbox",
    "jobdock.runtimes",
)

#: What ``jobdock ps`` must not load: the client and its models, the
#: settings, the server's stack, the runtimes, and httpx's command line
#: (click, pygments and rich's syntax highlighting).
NOT_FOR_PS = (
    "jobdock.client",
    "jobdock.models.jobs",
    "jobdock.models.spec",
    "jobdock.settings",
    "pydantic_settings",
    "sqlalchemy",
    "uvicorn",
    "fastapi",
    "cryptography",
    "jobdock.worker",
    "jobdock.store",
    "jobdock.api",
    "jobdock.node",
    "jobdock.sandbox",
    "jobdock.runtimes",
    "httpx._main",
    "click",
    "pygments",
    "rich.syntax",
)

_PROBE = """
import json, sys
{run}
names = {names!r}
print(json.dumps(sorted(m for m, module in sys.modules.items() if module is not None
                        and (m in names or m.startswith(tuple(n + "." for n in names))))))
"""

#: ``jobdock ps`` as the console script runs it, against a port nobody
#: listens on: it gets as far as the request, the table is all it misses.
_RUN_PS = """
sys.argv = ["jobdock", "ps", "--url", "http://127.0.0.1:9"]
from jobdock.cli import main
try:
    main()
except SystemExit:
    pass
"""


def _loaded(run: str, names: tuple[str, ...]) -> list[str]:
    """The modules of ``names`` (or under them) loaded by ``run`` in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(run=run, names=names)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_the_command_tree_loads_nothing_a_command_loads_when_it_runs() -> None:
    assert _loaded("import jobdock.cli", NOT_AT_START) == []


def test_ps_loads_no_client_models_settings_server_runtimes_or_httpx_cli() -> None:
    loaded = _loaded(_RUN_PS, (*NOT_FOR_PS, "jobdock.cli.listing"))

    assert loaded == ["jobdock.cli.listing"]  # its listing: ps got as far as its request


def test_import_jobdock_loads_the_client_only_when_asked() -> None:
    assert _loaded("import jobdock", ("jobdock.client", "jobdock.sandbox", "pydantic")) == []
    assert _loaded("from jobdock import Client", ("jobdock.client",)) == ["jobdock.client"]
