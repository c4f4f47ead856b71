"""What importing jobdock costs, and what it offers: the library and the
client load none of the server's stack, and ``jobdock.__all__`` is the
public surface the README and docs use."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jobdock

ROOT = Path(__file__).resolve().parents[2]

#: What a user who only wants the client (or the sandbox) must not pay for.
SERVER_ONLY = (
    "sqlalchemy",
    "uvicorn",
    "fastapi",
    "cryptography",
    "jobdock.worker",
    "jobdock.store",
    "jobdock.api",
)

#: The names the package offers; adding or removing one is a public change.
PUBLIC = {
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
}


_PROBE = """
import json, sys
import {module}
names, prefixes = {names!r}, {prefixes!r}
print(json.dumps(sorted(m for m in sys.modules if m in names or m.startswith(prefixes))))
"""


def _loaded_by(module: str) -> list[str]:
    """The modules of SERVER_ONLY (or under them) that ``import module``
    loads, in a fresh interpreter."""
    prefixes = tuple(f"{name}." for name in SERVER_ONLY)
    probe = _PROBE.format(module=module, names=SERVER_ONLY, prefixes=prefixes)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("module", ["jobdock", "jobdock.client"])
def test_the_library_and_the_client_load_none_of_the_server(module: str) -> None:
    offenders = _loaded_by(module)

    assert offenders == [], f"import {module} loads {', '.join(offenders)}"


def test_the_foundation_loads_none_of_the_server() -> None:
    assert _loaded_by("jobdock.models") == []


def test_all_is_sorted_without_duplicates() -> None:
    assert jobdock.__all__ == sorted(set(jobdock.__all__))


def test_every_name_in_all_is_importable_from_jobdock() -> None:
    missing = [name for name in jobdock.__all__ if not hasattr(jobdock, name)]

    assert missing == []


def test_all_is_the_public_surface() -> None:
    assert set(jobdock.__all__) == PUBLIC


def test_what_the_docs_import_from_jobdock_is_offered() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(path.read_text() for path in documents)
    named = set()
    for line in re.findall(r"^\s*from jobdock import (.+)$", text, re.MULTILINE):
        named.update(part.strip() for part in line.split(","))
    named.update(re.findall(r"`jobdock\.([A-Z]\w*)", text))
    # A lower-case name is a module of the package (``from jobdock import sandbox``).
    modules = {name for name in named if name.islower()}
    for name in modules:
        importlib.import_module(f"jobdock.{name}")

    assert named - modules, "the docs name none of the library's classes"
    assert named - modules <= PUBLIC
