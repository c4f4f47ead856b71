"""``jobdock run --image`` as a user types it, against a server on a private
dockerd (the examples of the README's container section)."""

from __future__ import annotations

from test_cli import jobdock  # tests/acceptance/test_cli.py

import engines
from support import ServerProcess


def test_run_image_prints_the_containers_output(docker_server: ServerProcess) -> None:
    result = jobdock(
        docker_server, "run", "--image", engines.BUSYBOX, "--", "sh", "-c", "echo hi; echo e >&2"
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hi\n", b"e\n")


def test_run_image_sends_stdin_with_dash_i(docker_server: ServerProcess) -> None:
    result = jobdock(docker_server, "run", "-i", "--image", "localhost/echo-job:1", stdin=b"foobar")
    assert (result.returncode, result.stdout) == (0, b"foobar")


def test_run_image_takes_env_limits_network_and_timeout(docker_server: ServerProcess) -> None:
    result = jobdock(
        docker_server,
        "run",
        "--image",
        engines.BUSYBOX,
        "--env",
        "KEY=VAL",
        "--memory",
        "256m",
        "--cpus",
        "1.5",
        "--network",
        "none",
        "--timeout",
        "10m",
        "--",
        "sh",
        "-c",
        'echo "$KEY"; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null '
        "|| cat /sys/fs/cgroup/memory.max; exit 4",
    )
    assert result.returncode == 4
    assert result.stdout.split() == [b"VAL", str(256 << 20).encode()]


def test_run_image_says_why_when_the_image_is_missing(docker_server: ServerProcess) -> None:
    result = jobdock(docker_server, "run", "--pull", "never", "--image", "localhost/none:1")
    assert result.returncode == 125
    assert b"localhost/none:1" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_bad_container_flags_are_one_line_errors(docker_server: ServerProcess) -> None:
    for args, complaint in (
        (["--image", "Not Valid"], b"image"),
        (["--image", engines.BUSYBOX, "--cache", "nocolon"], b"NAME:PATH"),
        (["--image", engines.BUSYBOX, "--memory", "lots"], b"memory"),
        (["--image", engines.BUSYBOX, "--network", "host"], b"not allowed"),
    ):
        result = jobdock(docker_server, "run", *args)
        assert result.returncode != 0, args
        assert complaint in result.stderr, (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, result.stderr
