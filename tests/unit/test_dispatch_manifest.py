"""docker-job-dispatcher's container manifests read as job specs
(dispatch/manifest.py): what maps to what, and what is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from jobdock.dispatch.manifest import is_manifest, spec_of_manifest
from jobdock.errors import TemplateSpecInvalid
from jobdock.models import JobSpec


def test_a_manifest_is_told_from_a_spec_by_its_capital_keys() -> None:
    assert is_manifest({"Image": "busybox"})
    assert not is_manifest({"image": "busybox", "command": ["true"]})
    assert not is_manifest(["Image"])


def test_the_fields_a_manifest_may_have_become_the_spec() -> None:
    spec = spec_of_manifest(
        {
            "Name": "/demo-1",
            "Image": "busybox:1",
            "Entrypoint": "echo",
            "Cmd": ["Hello", "world!"],
            "Env": ["A=1", "B=x=y"],
            "Labels": {"team": "infra"},
            "WorkingDir": "/tmp",
            "User": "nobody",
            "Platform": None,
            "HostConfig": {
                "NetworkMode": "none",
                "LogConfig": {"Type": "json-file"},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                "Memory": 64 * 1024 * 1024,
                "NanoCpus": 500_000_000,
                "PidsLimit": 0,
            },
        },
        "t",
    )
    assert spec["name"] == spec["idempotency_key"] == "demo-1"
    assert spec["entrypoint"] == ["echo"] and spec["command"] == ["Hello", "world!"]
    assert spec["env"] == {"A": "1", "B": "x=y"}
    assert spec["cwd"] == "/tmp" and spec["user"] == "nobody" and spec["network"] == "none"
    assert spec["retry"]["max_attempts"] == 3
    assert spec["resources"] == {"memory": 64 * 1024 * 1024, "cpus": 0.5}
    parsed = JobSpec.model_validate(spec)
    assert parsed.retry is not None and parsed.retry.backoff.initial == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        ({"Image": "b", "Privileged": True}, "Privileged"),
        ({"Image": "b", "HostConfig": {"Binds": ["/:/h"]}}, "HostConfig.Binds"),
        ({"Image": "b", "HostConfig": []}, "HostConfig"),
        ({"Image": "b", "Env": ["NOEQUALS"]}, "Env"),
        ({"Image": "b", "Cmd": [1]}, "Cmd"),
        ({"Image": "b", "Name": ""}, "Name"),
        ({"Image": "b", "Name": "x" * 201}, "Name"),
        (
            {"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "always"}}},
            "HostConfig.RestartPolicy.Name",
        ),
        (
            {"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "on-failure"}}},
            "HostConfig.RestartPolicy.MaximumRetryCount",
        ),
        ({"Image": "b", "HostConfig": {"Memory": "1g"}}, "HostConfig.Memory"),
    ],
)
def test_what_jobdock_cannot_honour_is_refused_naming_the_field(
    manifest: dict[str, Any], field: str
) -> None:
    with pytest.raises(TemplateSpecInvalid) as refused:
        spec_of_manifest(manifest, "t")
    assert refused.value.field == field
    assert field in refused.value.message and "'t'" in refused.value.message


def test_no_restart_and_default_network_add_nothing() -> None:
    spec = spec_of_manifest(
        {"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "no"}, "NetworkMode": "default"}},
        "t",
    )
    assert spec == {"image": "b"}
