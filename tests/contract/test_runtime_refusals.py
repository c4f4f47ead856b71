"""What a runtime cannot start, it refuses with SpawnError, whatever the
reason (issue 15): an exception of another kind escaped the worker's
handling of spawn failures and left the job running for ever.

The specs are built unvalidated (``model_construct``): submit refuses them
now, but a runtime must not rely on that.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from conftest import RuntimeCase
from jobdock.errors import SpawnError
from jobdock.models import JobSpec, Resources
from jobdock.runtimes.base import AttemptInfo
from jobdock.submit import new_job_id

ENV = {"PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"}

#: (name, the spec's fields, which runtimes can be asked it: "host" for
#: host processes only, "limits" for those that enforce limits).
UNSTARTABLE: list[tuple[str, dict[str, Any], str]] = [
    ("nul-in-cwd", {"cwd": "/tmp\0x"}, "host"),
    ("nul-in-argument", {"command": ["echo", "a\0b"]}, "host"),
    ("nul-in-env", {"env": {"A": "b\0c"}}, "host"),
    ("cpus-1e308", {"resources": Resources.model_construct(cpus=1e308)}, "limits"),
]


@pytest.mark.parametrize(
    ("fields", "where"), [c[1:] for c in UNSTARTABLE], ids=[c[0] for c in UNSTARTABLE]
)
async def test_a_spec_that_cannot_be_started_raises_spawn_error(
    runtime: RuntimeCase, fields: dict[str, Any], where: str
) -> None:
    if where == "host" and not runtime.on_host:
        pytest.skip(f"{runtime.name}: the engine, not the host, reads the spec")
    if where == "limits" and runtime.name == "process":
        pytest.skip("process: the plain runtime enforces no limits")
    base: dict[str, Any] = {"command": ["true"], "resources": Resources()}
    if runtime.image is not None:
        base["image"] = runtime.image
    spec = JobSpec.model_construct(**{**base, **fields})
    env = {**(ENV if runtime.on_host else {}), **fields.get("env", {})}

    try:
        execution = await runtime.runtime.start(spec, b"", env, AttemptInfo(new_job_id(), 1))
    except SpawnError as exc:
        assert exc.message
        return
    execution.kill()
    await execution.wait()
    await execution.close()
    pytest.fail("the runtime started a job it should have refused")
