"""What an attempt really ran (models.AttemptInputs), as its runtime starts
it: the parts every runtime knows from the spec and what it was given
(env names, stdin's size and hash), and a container's from the engine (the
image's digest, the resolved command and entrypoint, user, directory and
OCI runtime). ``jobdock repro`` runs exactly these again.

Never an env value: only the names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from jobdock.models import AttemptInputs, JobSpec
from jobdock.runtimes.base import RunAs, Stdin
from jobdock.runtimes.isolation import Plan


def base_inputs(spec: JobSpec, stdin: Stdin, env: Mapping[str, str]) -> AttemptInputs:
    """The inputs the spec and the runtime's arguments say (a streamed
    stdin's size and hash are not known at the start: null)."""
    size, digest = None, None
    if isinstance(stdin, bytes):
        size, digest = len(stdin), hashlib.sha256(stdin).hexdigest()
    return AttemptInputs(
        command=list(spec.command),
        entrypoint=spec.entrypoint,
        env=sorted(env),
        stdin_bytes=size,
        stdin_sha256=digest,
        cwd=spec.cwd,
        user=spec.user,
        limits=spec.resources.model_dump(exclude_none=True),
    )


def image_digest(image: str, record: Mapping[str, Any]) -> str:
    """The digest to pin ``image`` by, from the engine's record of it: the
    repo digest of the same repository where the engine knows one (it was
    pulled), else the image id (built or imported here)."""
    repository = _repository(image)
    digests = [str(d) for d in record.get("RepoDigests") or []]
    same = [d for d in digests if d.partition("@")[0] == repository]
    chosen = same or digests
    return chosen[0] if chosen else str(record["Id"])


def container_inputs(
    base: AttemptInputs,
    image: str,
    container: Mapping[str, Any],
    image_record: Mapping[str, Any],
) -> AttemptInputs:
    """``base`` with what the engine resolved for the created ``container``:
    its image (by digest), command, entrypoint, directory, user, runtime."""
    config = container.get("Config") or {}
    host = container.get("HostConfig") or {}
    return base.model_copy(
        update={
            "image": image,
            "image_id": str(image_record["Id"]),
            "image_digest": image_digest(image, image_record),
            "command": list(config.get("Cmd") or []),
            "entrypoint": list(config["Entrypoint"]) if config.get("Entrypoint") else None,
            "cwd": config.get("WorkingDir") or base.cwd,
            "user": config.get("User") or base.user,
            "runtime": host.get("Runtime") or "runc",
            "isolation": "container",
        }
    )


def process_inputs(
    spec: JobSpec, stdin: Stdin, env: Mapping[str, str], plan: Plan, run_as: RunAs | None
) -> AttemptInputs:
    """What a process job really ran: its command in its directory, as its
    user, under the plan's confinement and limits."""
    user = spec.user or (f"{run_as.uid}:{run_as.gid}" if run_as is not None else None)
    return base_inputs(spec, stdin, env).model_copy(
        update={
            "cwd": spec.cwd or "/",
            "user": user,
            "isolation": plan.isolation,
            "limits": dict(plan.limits)
            if plan.limits
            else spec.resources.model_dump(exclude_none=True),
            "runtime": "runsc" if plan.forwards_signals else "process",
        }
    )


def _repository(image: str) -> str:
    """``image`` without its tag or digest."""
    name = image.partition("@")[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name
