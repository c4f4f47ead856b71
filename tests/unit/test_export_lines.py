"""``jobdock export --format docker``: an image job as the docker run line
that runs it the same way; what the line cannot carry is named above it."""

from __future__ import annotations

import shlex

from jobdock.cli.render.export import docker_line


def test_an_image_job_is_the_docker_run_line_with_its_limits_env_and_arguments() -> None:
    spec = {
        "image": "builder:1",
        "command": ["make", "test"],
        "env": {"CI": "1"},
        "cwd": "/src",
        "network": "none",
        "user": "1000:1000",
        "resources": {"memory": 67108864, "cpus": 1.5},
        "entrypoint": ["/bin/sh", "-c"],
        "secrets": [{"name": "deploy-key", "file": "key"}],
    }

    notes, line = docker_line(spec, "builder@sha256:" + "a" * 64).rstrip("\n").rsplit("\n", 1)

    assert shlex.split(line) == [
        "docker", "run", "--rm", "--cpus", "1.5", "--memory", "67108864",
        "--network", "none", "--user", "1000:1000", "--workdir", "/src",
        "-e", "CI=1", "--entrypoint", "/bin/sh", "builder@sha256:" + "a" * 64,
        "-c", "make", "test",
    ]  # fmt: skip
    assert notes == "# not carried: secrets (give their values yourself): deploy-key"
