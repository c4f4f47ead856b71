"""jobdock: run Linux processes as jobs behind an HTTP API, a CLI and a library.

The names below load on first use (PEP 562), so that ``import jobdock`` and
the ``jobdock`` command (``jobdock.cli`` is under this package) pay only for
what they use: ``jobdock ps`` never loads the sandbox's runtimes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobdock.lazy import lazy_exports
from jobdock.version import __version__

if TYPE_CHECKING:
    from jobdock.client import (
        AsyncClient,
        Client,
    )
    from jobdock.client_errors import (
        Forbidden,
        IllegalTransition,
        InvalidRequest,
        JobNotFound,
        NotFound,
        ScheduleExists,
        ScheduleNotFound,
        SecretNotFound,
        TemplateNotFound,
        Unauthenticated,
        WaitTimeout,
        WorkflowNotFound,
    )
    from jobdock.errors import (
        ApiError,
        InvalidSpec,
        JobdockError,
        ServerUnreachable,
    )
    from jobdock.handles import (
        AsyncJobHandle,
        JobHandle,
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
    from jobdock.sandbox import (
        Sandbox,
        SandboxJob,
        SandboxResult,
        SandboxStatus,
    )
    from jobdock.tasks import (
        AsyncTask,
        Task,
        TaskFailed,
        TaskRun,
        task,
    )

#: Where each public name lives.
_HOMES = {
    "AsyncClient": "jobdock.client",
    "Client": "jobdock.client",
    "Forbidden": "jobdock.client_errors",
    "IllegalTransition": "jobdock.client_errors",
    "InvalidRequest": "jobdock.client_errors",
    "JobNotFound": "jobdock.client_errors",
    "NotFound": "jobdock.client_errors",
    "ScheduleExists": "jobdock.client_errors",
    "ScheduleNotFound": "jobdock.client_errors",
    "SecretNotFound": "jobdock.client_errors",
    "TemplateNotFound": "jobdock.client_errors",
    "Unauthenticated": "jobdock.client_errors",
    "WaitTimeout": "jobdock.client_errors",
    "WorkflowNotFound": "jobdock.client_errors",
    "ApiError": "jobdock.errors",
    "InvalidSpec": "jobdock.errors",
    "JobdockError": "jobdock.errors",
    "ServerUnreachable": "jobdock.errors",
    "AsyncJobHandle": "jobdock.handles",
    "JobHandle": "jobdock.handles",
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
    "SandboxJob": "jobdock.sandbox",
    "SandboxResult": "jobdock.sandbox",
    "SandboxStatus": "jobdock.sandbox",
    "AsyncTask": "jobdock.tasks",
    "Task": "jobdock.tasks",
    "TaskFailed": "jobdock.tasks",
    "TaskRun": "jobdock.tasks",
    "task": "jobdock.tasks",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)


__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncJobHandle",
    "AsyncTask",
    "Attempt",
    "Client",
    "Flow",
    "Forbidden",
    "IllegalTransition",
    "InvalidRequest",
    "InvalidSpec",
    "Job",
    "JobHandle",
    "JobNotFound",
    "JobPage",
    "JobSpec",
    "JobState",
    "JobdockError",
    "NotFound",
    "Reason",
    "RunResult",
    "Sandbox",
    "SandboxJob",
    "SandboxResult",
    "SandboxStatus",
    "ScheduleExists",
    "ScheduleNotFound",
    "SecretNotFound",
    "ServerUnreachable",
    "Stream",
    "Task",
    "TaskFailed",
    "TaskRun",
    "TemplateNotFound",
    "Unauthenticated",
    "WaitTimeout",
    "Workflow",
    "WorkflowNotFound",
    "WorkflowSpec",
    "__version__",
    "task",
]
