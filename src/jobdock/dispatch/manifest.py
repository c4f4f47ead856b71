"""docker-job-dispatcher's container manifests as jobdock job specs.

The dispatcher's filters produce the body of Docker's container create
(``Name``, ``Image``, ``Cmd``, ``HostConfig``...); a template whose output
has such keys (any key starting with an upper-case letter) is read here, so
that those filters run unchanged (docs/dispatch.md, "docker-job-dispatcher").
What a manifest may say is a short list; anything else is refused naming the
field, never dropped quietly, except what has no meaning for a jobdock job
(``HostConfig.LogConfig``: jobdock keeps the output itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobdock.errors import TemplateSpecInvalid

#: The longest Name: it becomes the job's name and idempotency key (200 each).
_MAX_NAME = 200


def is_manifest(value: Any) -> bool:
    """Whether a template's output is a Docker manifest, not a job spec
    (whose fields are all lower case)."""
    return isinstance(value, dict) and any(key[:1].isupper() for key in value)


def spec_of_manifest(manifest: dict[str, Any], template: str) -> dict[str, Any]:
    """The job spec (as JSON) a Docker manifest asks for; raises
    TemplateSpecInvalid naming the field it cannot take."""
    spec: dict[str, Any] = {}
    given = {key: value for key, value in manifest.items() if value is not None}
    host = given.pop("HostConfig", {})
    if not isinstance(host, dict):
        raise _refused(template, "HostConfig", "must be an object")
    for key, value in given.items():
        reader = _TOP.get(key)
        if reader is None:
            raise _refused(template, key, "is not a field jobdock takes from a manifest")
        reader(spec, value, template)
    for key, value in host.items():
        if value is None:
            continue
        reader = _HOST.get(key)
        if reader is None:
            raise _refused(template, f"HostConfig.{key}", "is not a field jobdock takes")
        reader(spec, value, template)
    return spec


def _refused(template: str, field: str, message: str) -> TemplateSpecInvalid:
    return TemplateSpecInvalid(
        f"template {template!r} made a Docker manifest jobdock cannot run: {field} {message}",
        field=field,
    )


def _strings(value: Any, template: str, field: str) -> list[str]:
    """A Docker string-or-list field as a list (a string is one item)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _refused(template, field, "must be a string or a list of strings")


def _string(value: Any, template: str, field: str) -> str:
    if not isinstance(value, str):
        raise _refused(template, field, "must be a string")
    return value


def _name(spec: dict[str, Any], value: Any, template: str) -> None:
    # Docker refuses a second container of a name; the dispatcher then
    # answers 200 and the existing job: an idempotency key does that here.
    name = _string(value, template, "Name").lstrip("/")
    if not name or len(name) > _MAX_NAME:
        raise _refused(template, "Name", f"must be 1-{_MAX_NAME} characters")
    spec["name"] = name
    spec["idempotency_key"] = name


def _env(spec: dict[str, Any], value: Any, template: str) -> None:
    env: dict[str, str] = {}
    for item in _strings(value, template, "Env"):
        key, sep, text = item.partition("=")
        if not key or not sep:
            raise _refused(template, "Env", f"{item!r} is not NAME=VALUE")
        env[key] = text
    spec["env"] = env


def _labels(spec: dict[str, Any], value: Any, template: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _refused(template, "Labels", "must be an object of strings")
    spec["labels"] = dict(value)


def _restart(spec: dict[str, Any], value: Any, template: str) -> None:
    if not isinstance(value, dict):
        raise _refused(template, "HostConfig.RestartPolicy", "must be an object")
    policy = value.get("Name") or "no"
    if policy == "no":
        return
    if policy != "on-failure":
        raise _refused(
            template, "HostConfig.RestartPolicy.Name", f"{policy!r}: only 'no' and 'on-failure'"
        )
    retries = value.get("MaximumRetryCount") or 0
    if not isinstance(retries, int) or not 1 <= retries <= 999:
        raise _refused(
            template,
            "HostConfig.RestartPolicy.MaximumRetryCount",
            "must be 1-999 (jobdock has no unlimited retries)",
        )
    # Docker restarts a container that exited non-zero, after 100 ms,
    # doubling: the same here.
    spec["retry"] = {
        "max_attempts": retries + 1,
        "on_reasons": ["exited", "signaled", "oom"],
        "backoff": {"initial": 0.1, "multiplier": 2.0, "max": 60},
    }


def _resource(key: str, name: str, scale: int | float = 1) -> Reader:
    """A HostConfig limit as ``resources.NAME`` (Docker's 0: no limit)."""

    def read(spec: dict[str, Any], value: Any, template: str) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise _refused(template, f"HostConfig.{key}", "must be a number, 0 or more")
        if value:
            spec.setdefault("resources", {})[name] = value * scale

    return read


def _copy(field: str, key: str, kind: str = "string") -> Reader:
    def read(spec: dict[str, Any], value: Any, template: str) -> None:
        if kind == "list":
            spec[field] = _strings(value, template, key)
        else:
            spec[field] = _string(value, template, key)

    return read


def _ignored(spec: dict[str, Any], value: Any, template: str) -> None:
    """A field with no meaning for a jobdock job."""


def _network(spec: dict[str, Any], value: Any, template: str) -> None:
    mode = _string(value, template, "HostConfig.NetworkMode")
    if mode != "default":
        spec["network"] = mode


Reader = Callable[[dict[str, Any], Any, str], None]

#: The manifest's fields jobdock reads, and how.
_TOP: dict[str, Reader] = {
    "Name": _name,
    "Image": _copy("image", "Image"),
    "Entrypoint": _copy("entrypoint", "Entrypoint", "list"),
    "Cmd": _copy("command", "Cmd", "list"),
    "Env": _env,
    "Labels": _labels,
    "WorkingDir": _copy("cwd", "WorkingDir"),
    "User": _copy("user", "User"),
}
_HOST: dict[str, Reader] = {
    "NetworkMode": _network,
    "RestartPolicy": _restart,
    "LogConfig": _ignored,
    "Memory": _resource("Memory", "memory"),
    "NanoCpus": _resource("NanoCpus", "cpus", 1e-9),
    "PidsLimit": _resource("PidsLimit", "pids"),
    "Runtime": _copy("container_runtime", "HostConfig.Runtime"),
}
