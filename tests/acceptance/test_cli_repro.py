"""``jobdock repro`` (issue 19): a finished job of a real server run again
here, on a temporary local server and the same test dockerd, exactly as it
ran: its pinned image digest (a tag moved since does not change it), its
stdin, env and command; secrets are named by the server and given values
here; another user's job is no such job. ``--compare`` says whether exit
code and output match."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import engines
from jobdock.client import Client, Credentials
from jobdock.vault import generate_key
from support import ServerProcess, make_token

SERVER_SECRET = "the-servers-value-of-it"


@dataclass
class Setup:
    server: ServerProcess
    dockerd: engines.Engine
    tokens: dict[str, str]

    def client(self, user: str = "alice") -> Client:
        return Client(self.server.url, credentials=Credentials(token=self.tokens[user]))

    def jobdock(
        self, *args: str, user: str = "alice", **env: str
    ) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("JOBDOCK_")}
        environment |= {
            "JOBDOCK_URL": self.server.url,
            "JOBDOCK_TOKEN": self.tokens[user],
            "DOCKER_HOST": self.dockerd.url,
            **env,
        }
        return subprocess.run(
            [sys.executable, "-m", "jobdock", *args],
            capture_output=True,
            text=True,
            env=environment,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    def finished(self, spec: dict[str, object], user: str = "alice") -> str:
        with self.client(user) as client:
            job = client.submit(spec)
            client.wait(job.id, timeout=60)
        return job.id


@pytest.fixture(scope="module")
def setup(dockerd: engines.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp("repro")
    server = engines.server_on(
        dockerd,
        home,
        "--tokens",
        secret_key=generate_key(),
        container_runtimes='["runc", "runsc"]',
    )
    tokens = {user: make_token(home, user) for user in ("alice", "bob")}
    server.start()
    yield Setup(server, dockerd, tokens)
    server.stop()


def test_a_repro_gives_the_same_exit_code_and_output_and_compare_says_same(
    setup: Setup,
) -> None:
    job_id = setup.finished(
        {
            "image": engines.BUSYBOX,
            "command": ["sh", "-c", 'echo "out $WHO"; tr a-z A-Z; echo err >&2; exit 3'],
            "env": {"WHO": "world"},
            "stdin": "some input\n",
        }
    )

    done = setup.jobdock("repro", job_id, "--compare")

    assert done.returncode == 3, done.stderr
    assert done.stdout == "out world\nSOME INPUT\n"
    assert done.stderr.startswith("err\n")
    assert "verdict: same" in done.stderr
    assert "exit code same (3)" in done.stderr


def test_each_attempt_records_what_it_really_ran(setup: Setup) -> None:
    job_id = setup.finished(
        {"image": "localhost/echo-job:1", "env": {"WHO": "value-not-kept"}, "stdin": "abc"}
    )

    job = json.loads(setup.jobdock("inspect", job_id).stdout)
    inputs = job["attempts"][-1]["inputs"]
    described = setup.jobdock("describe", job_id).stdout

    assert inputs["image"] == "localhost/echo-job:1"
    assert inputs["image_digest"].startswith("sha256:")
    assert inputs["entrypoint"][:2] == ["sh", "-c"]  # the image's, resolved by the engine
    assert "WHO" in inputs["env"] and "value-not-kept" not in json.dumps(inputs)
    assert inputs["stdin_bytes"] == 3
    assert inputs["stdin_sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert inputs["runtime"] == "runc"
    assert inputs["image_digest"] in described


def test_a_moved_tag_still_reproduces_the_image_that_ran(setup: Setup) -> None:
    rootfs = engines.busybox_rootfs()
    setup.dockerd.import_image("localhost/moving:1", rootfs, None, ["echo", "first image"])
    job_id = setup.finished({"image": "localhost/moving:1"})
    setup.dockerd.import_image("localhost/moving:1", rootfs, None, ["echo", "second image"])
    with setup.client() as client:
        digest = client.get(job_id).attempts[-1].inputs.image_digest  # type: ignore[union-attr]

    done = setup.jobdock("repro", job_id)
    exported = setup.jobdock("export", job_id, "-F", "docker")

    assert (done.returncode, done.stdout) == (0, "first image\n"), done.stderr
    assert digest is not None and f" {digest}" in exported.stdout
    assert "localhost/moving:1" not in exported.stdout


def test_a_missing_image_is_said_plainly_and_never_replaced(setup: Setup) -> None:
    rootfs = engines.busybox_rootfs()
    setup.dockerd.import_image("localhost/gone:1", rootfs, None, ["echo", "gone"])
    job_id = setup.finished({"image": "localhost/gone:1"})
    with setup.dockerd.http() as http:
        http.delete("/images/localhost/gone:1", params={"force": "true"}).raise_for_status()
    # The original image is gone from the engine; an impostor holds its tag.
    setup.dockerd.import_image("localhost/gone:1", rootfs, None, ["echo", "impostor"])

    done = setup.jobdock("repro", job_id)
    pulled = setup.jobdock("repro", job_id, "--pull")

    assert done.returncode == pulled.returncode == 125
    assert "impostor" not in done.stdout + pulled.stdout
    assert "does not have" in done.stderr and "docker load" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    # An image id has no registry digest to pull it by: said so, nothing else run.
    assert "--pull cannot fetch it" in pulled.stderr


def test_another_users_job_is_no_such_job(setup: Setup) -> None:
    job_id = setup.finished({"image": engines.BUSYBOX, "command": ["echo", "alice's"]})

    done = setup.jobdock("repro", job_id, user="bob")
    missing = setup.jobdock("repro", "f" * len(job_id), user="bob")

    assert done.returncode == missing.returncode != 0
    assert done.stderr == missing.stderr.replace("f" * len(job_id), job_id)
    assert done.stderr == f"jobdock: no job with id {job_id!r}\n"
    assert "alice's" not in done.stdout


def test_a_jobs_stdin_is_read_back_by_its_owner_only(setup: Setup) -> None:
    job_id = setup.finished({"image": engines.BUSYBOX, "command": ["cat"], "stdin": "private"})

    def stdin_as(user: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {setup.tokens[user]}"}
        return httpx.get(f"{setup.server.url}/v1/jobs/{job_id}/stdin", headers=headers)

    assert (stdin_as("alice").status_code, stdin_as("alice").content) == (200, b"private")
    assert stdin_as("bob").status_code == 404
    assert stdin_as("bob").json()["error"]["code"] == "not_found"


def test_secrets_are_named_and_given_here_never_fetched(setup: Setup, tmp_path: Path) -> None:
    with setup.client() as client:
        client.set_secret("api-token", SERVER_SECRET.encode())
    job_id = setup.finished(
        {
            "image": engines.BUSYBOX,
            "command": ["sh", "-c", 'echo "token of ${#TOKEN} chars"; echo "$TOKEN" >&2'],
            "secrets": [{"name": "api-token", "env": "TOKEN"}],
        }
    )

    env_file = tmp_path / "secrets.env"
    env_file.write_text("# local values\napi-token=from-file\n")

    refused = setup.jobdock("repro", job_id)
    given = setup.jobdock("repro", job_id, "--secret", "api-token=MINE", MINE="local")
    from_file = setup.jobdock("repro", job_id, "--env-file", str(env_file))
    without = setup.jobdock("repro", job_id, "--without-secrets")

    assert refused.returncode == 2
    assert "api-token" in refused.stderr and "--secret" in refused.stderr
    assert (given.returncode, given.stdout) == (0, "token of 5 chars\n"), given.stderr
    assert SERVER_SECRET not in given.stdout + given.stderr
    assert (from_file.returncode, from_file.stdout) == (0, "token of 9 chars\n"), from_file.stderr
    assert (without.returncode, without.stdout) == (0, "token of 0 chars\n"), without.stderr


def test_a_process_job_is_reproduced_with_its_stdin(setup: Setup, tmp_path: Path) -> None:
    job_id = setup.finished(
        {"command": ["sh", "-c", "wc -c; echo done >&2; exit 4"], "stdin": "12345"}
    )

    done = setup.jobdock("repro", job_id, "--compare")

    assert done.returncode == 4, done.stderr
    assert done.stdout.strip() == "5"
    assert "verdict: same" in done.stderr


@pytest.mark.skipif(shutil.which("runsc") is None, reason="gVisor's runsc is not installed")
def test_a_runsc_job_is_reproduced_under_runsc(setup: Setup) -> None:
    job_id = setup.finished(
        {
            "image": engines.BUSYBOX,
            "container_runtime": "runsc",
            "network": "none",
            "command": ["sh", "-c", "dmesg | grep -c 'Starting gVisor'; exit 6"],
        }
    )

    done = setup.jobdock("repro", job_id, "--compare")

    assert done.returncode == 6, done.stderr
    assert done.stdout == "1\n"
    assert "verdict: same" in done.stderr
