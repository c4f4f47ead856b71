"""jobdock: run Linux processes as jobs behind an HTTP API, a CLI and a library.

The names below load on first use (PEP 562), so that ``import jobdock`` and
the ``jobdock`` command (``jobdock.cli`` is under this package) pay only for
what they use: ``jobdock ps`` never loads the sandbox's runtimes.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from jobdock.version import __version__

if TYPE_CHECKING:
    from jobdock.client import AsyncClient, Client
    from jobdock.errors import (
        ApiError,
        IllegalTransition,
        InvalidSpec,
        JobdockError,
        JobNotFound,
        ServerUnreachable,
    )
    from jobdock.models import (
        Attempt,
        Flow,
        Job,
        JobPage,
        JobSpec,
        JobState,
        Reason,
        RunResult,
        Stream,
        Workflow,
        WorkflowSpec,
    )
    from jobdock.sandbox import Sandbox, SandboxResult

#: Where each public name lives.
_HOMES = {
    "AsyncClient": "jobdock.client",
    "Client": "jobdock.client",
    "ApiError": "jobdock.errors",
    "IllegalTransition": "jobdock.errors",
    "InvalidSpec": "jobdock.errors",
    "JobdockError": "jobdock.errors",
    "JobNotFound": "jobdock.errors",
    "ServerUnreachable": "jobdock.errors",
    "Attempt": "jobdock.models",
    "Flow": "jobdock.models",
    "Job": "jobdock.models",
    "JobPage": "jobdock.models",
    "JobSpec": "jobdock.models",
    "JobState": "jobdock.models",
    "Reason": "jobdock.models",
    "RunResult": "jobdock.models",
    "Stream": "jobdock.models",
    "Workflow": "jobdock.models",
    "WorkflowSpec": "jobdock.models",
    "Sandbox": "jobdock.sandbox",
    "SandboxResult": "jobdock.sandbox",
}


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'jobdock' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "ApiError",
    "AsyncClient",
    "Attempt",
    "Client",
    "Flow",
    "IllegalTransition",
    "InvalidSpec",
    "Job",
    "JobNotFound",
    "JobPage",
    "JobSpec",
    "JobState",
    "JobdockError",
    "Reason",
    "RunResult",
    "Sandbox",
    "SandboxResult",
    "ServerUnreachable",
    "Stream",
    "Workflow",
    "WorkflowSpec",
    "__version__",
]
