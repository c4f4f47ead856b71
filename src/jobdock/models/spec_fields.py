"""A job spec's fields as keyword arguments, typed: what ``Flow.step``,
``Flow.call`` and ``Sandbox.run`` take besides their own parameters. Each
takes what the :class:`~jobdock.models.JobSpec` field of that name takes:
the model or its JSON form, a duration as seconds or ``"10m"``, a size as
bytes or ``"64m"``. ``tests/unit/test_spec_fields.py`` holds these and
JobSpec's fields together.

Imports only jobdock.models.parts (for typing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from jobdock.models.parts import Cache, Isolation, Resources, RetryPolicy, SecretRef

Seconds = float | int | str
Bytes = int | str


class RunFields(TypedDict, total=False):
    """JobSpec's fields but ``command``, ``name`` and the job's input
    (``stdin``, ``stdin_base64``, ``env``), which the methods taking these
    name themselves."""

    stdin_stream: bool
    cwd: str | None
    timeout: Seconds | None
    kill_grace: Seconds
    labels: Mapping[str, str]
    on_worker_lost: Literal["requeue", "fail"]
    requires: Mapping[str, str]
    resources: Resources | Mapping[str, Any]
    image: str | None
    entrypoint: Sequence[str] | None
    user: str | None
    network: str | None
    container_runtime: str | None
    pull: Literal["always", "if-not-present", "never"]
    caches: Sequence[Cache | Mapping[str, Any]]
    secrets: Sequence[SecretRef | Mapping[str, Any]]
    secrets_path: str | None
    remove_image: bool
    priority: int
    run_at: datetime | str | None
    allow_past: bool
    retry: RetryPolicy | Mapping[str, Any] | None
    idempotency_key: str | None
    concurrency_key: str | None
    concurrency_limit: int | None
    queue_timeout: Seconds | None
    total_timeout: Seconds | None
    keep_for: Seconds | None
    isolation: Isolation | Mapping[str, Any] | bool | None
    output_limit: Bytes | None
    on_output_limit: Literal["stop", "drop"]
    webhooks: Sequence[str]


class StepFields(RunFields, total=False):
    """A workflow step's job: RunFields and its input (the step's name is the job's)."""

    stdin: str | None
    stdin_base64: str | None
    env: Mapping[str, str]
