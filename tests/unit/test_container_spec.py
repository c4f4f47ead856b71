"""Image jobs without an engine: image references, how a container's end
reads as an outcome, cache volumes per owner, and registry credentials."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobdock.models import CONTAINER_LABEL, JobSpec, Reason, normalize_image
from jobdock.models.outcome import ExitStatus
from jobdock.runtimes.container import ContainerRuntime, cache_volume, exit_status_of
from jobdock.settings import Settings


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("busybox", "busybox:latest"),
        ("library/hello-world", "library/hello-world:latest"),
        ("scottg489/echo-job:latest", "scottg489/echo-job:latest"),
        ("localhost/busybox:1", "localhost/busybox:1"),
        ("registry.example.com:5000/team/app", "registry.example.com:5000/team/app:latest"),
        ("app@sha256:" + "a" * 64, "app@sha256:" + "a" * 64),
    ],
)
def test_an_image_reference_without_a_tag_gets_latest(given: str, normal: str) -> None:
    assert normalize_image(given) == normal


@pytest.mark.parametrize("given", ["", "Busybox", "UPPER/app", "app:", "a b", "app:-tag", "/app"])
def test_an_invalid_image_reference_is_refused_naming_it(given: str) -> None:
    with pytest.raises(ValueError, match="image reference"):
        normalize_image(given)


def test_an_image_job_needs_no_command_and_requires_a_container_worker() -> None:
    spec = JobSpec(image="busybox", requires={"zone": "a"})
    assert spec.command == []
    assert spec.requirements() == {"zone": "a", CONTAINER_LABEL: "yes"}
    assert JobSpec(command=["true"], requires={"zone": "a"}).requirements() == {"zone": "a"}


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({}, "give a command, or an image"),
        ({"command": ["true"], "network": "none"}, "image jobs only"),
        ({"command": ["true"], "caches": [{"name": "c", "path": "/c"}]}, "image jobs only"),
        ({"image": "b", "caches": [{"name": "c", "path": "relative"}]}, "absolute"),
        ({"image": "b", "caches": [{"name": "../x", "path": "/c"}]}, "letters"),
        ({"image": "b", "resources": {"io_read_bps": "1m"}}, "io limits"),
    ],
)
def test_specs_that_mix_up_process_and_image_jobs_are_refused(
    fields: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        JobSpec.model_validate(fields)


@pytest.mark.parametrize(
    ("state", "limit", "status"),
    [
        ({"ExitCode": 0}, None, ExitStatus(0)),
        ({"ExitCode": 3}, None, ExitStatus(3)),
        ({"ExitCode": 143}, None, ExitStatus(143, 15)),
        ({"ExitCode": 137}, None, ExitStatus(137, 9)),
        # dockerd says when the kernel killed it for memory ...
        (
            {"ExitCode": 137, "OOMKilled": True},
            None,
            ExitStatus(137, 9, Reason.OOM, "out of memory"),
        ),
        # ... podman does not: a SIGKILL under a memory limit is taken as one.
        (
            {"ExitCode": 137},
            1024,
            ExitStatus(137, 9, Reason.OOM, "out of memory (limit 1024 bytes)"),
        ),
    ],
)
def test_how_a_container_ended_becomes_an_exit_status(
    state: dict[str, object], limit: int | None, status: ExitStatus
) -> None:
    assert exit_status_of(state, limit) == status


def test_a_cache_volume_is_the_same_for_one_owner_and_another_for_anyone_else() -> None:
    mine = cache_volume("default", "alice", "m2")
    assert mine == cache_volume("default", "alice", "m2")
    assert mine != cache_volume("default", "bob", "m2")
    assert mine != cache_volume("other-namespace", "alice", "m2")
    assert mine != cache_volume("default", "alice", "m3")


def test_registry_credentials_are_picked_by_the_images_registry_host() -> None:
    settings = Settings(
        registry_auth={
            "registry.example.com:5000": {"username": "ci", "password": "s3cret"},
            "docker.io": {"username": "hub", "password": "hubpass"},
        }
    )
    runtime = ContainerRuntime(settings)
    private = runtime._registry_auth("registry.example.com:5000/team/app:1")
    assert private == {
        "username": "ci",
        "password": "s3cret",
        "serveraddress": "registry.example.com:5000",
    }
    assert runtime._registry_auth("library/busybox:1")["username"] == "hub"  # type: ignore[index]
    assert runtime._registry_auth("busybox:1")["username"] == "hub"  # type: ignore[index]
    assert runtime._registry_auth("localhost/busybox:1") is None
    assert "s3cret" not in repr(settings), "a password must not show in the settings' repr"
