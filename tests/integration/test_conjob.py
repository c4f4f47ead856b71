"""ConJob's /job/run as its users and its own acceptance suite see it, on a
real server and the suite's dockerd: its defaults (pull always, the docker
cache, remove_image), its limits (REJECTED, or queued), its timeouts, its
messages, its secrets and a server-wide container runtime."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import engines
from jobdock.vault import generate_key
from support import ServerProcess, eventually, make_token

#: Images of these tests: their entrypoint is ``sh -c``, so a /job/run's
#: body is a script (ConJob passes the body as the one argument).
SH = "localhost/conjob-sh:1"
SH_OTHER = "localhost/conjob-sh:2"
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def images(dockerd: engines.Engine) -> engines.Engine:
    rootfs = engines.busybox_rootfs()
    for image in (SH, SH_OTHER):
        dockerd.import_image(image, rootfs, ["sh", "-c"], None)
    return dockerd


def serve(home: Path, dockerd: engines.Engine, *args: str, **settings: str) -> ServerProcess:
    return engines.server_on(dockerd, home, *args, **settings).start()


@pytest.fixture(scope="module")
def server(images: engines.Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with ConJob's default limits, and a runtime for /job/run."""
    home = tmp_path_factory.mktemp("conjob")
    started = serve(
        home, images, conjob_container_runtime="runc", conjob_max_requests_per_second="100"
    )
    yield started.url
    started.stop()


def job_run(
    url: str, script: str = "", headers: dict[str, str] | None = None, **params: str
) -> httpx.Response:
    return httpx.post(
        f"{url}/job/run",
        params={"image": SH, "pull": "absent", **params},
        content=script.encode(),
        headers={**JSON, **(headers or {})},
        timeout=60,
    )


def in_parallel(url: str, calls: int, script: str) -> list[httpx.Response]:
    """``calls`` /job/run calls sent at once, as ConJob's acceptance suite does."""
    start = threading.Barrier(calls)

    def call(_: int) -> httpx.Response:
        start.wait()
        return job_run(url, script)

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(call, range(calls)))


def jobs_of(url: str) -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = httpx.get(f"{url}/v1/jobs", timeout=10).json()["jobs"]
    return jobs


# -- defaults and messages ------------------------------------------------------------


def test_without_pull_the_image_is_pulled_as_conjob_does(server: str) -> None:
    # No registry answers here: ConJob's default (always) cannot pull the
    # local image, and says so as ConJob does; pull=absent runs it.
    pulled = httpx.get(f"{server}/job/run", params={"image": SH}, headers=JSON, timeout=60)
    assert pulled.status_code == 404
    assert pulled.json() == {
        "conclusion": "NOT_FOUND",
        "output": "",
        "exitCode": -1,
        "message": "Job not found.",
    }

    ran = job_run(server, "echo foobar")
    assert ran.status_code == 200
    assert ran.json() == {
        "conclusion": "SUCCESS",
        "output": "foobar\n",
        "exitCode": 0,
        "message": "Job run successful.",
    }


def test_a_failed_run_has_conjobs_message_and_its_exit_code(server: str) -> None:
    failed = job_run(server, "echo no; exit 3")
    assert failed.status_code == 400
    assert failed.json() == {
        "conclusion": "FAILURE",
        "output": "no\n",
        "exitCode": 3,
        "message": "Job run failed.",
    }


def test_the_docker_cache_is_kept_per_image_between_runs(server: str) -> None:
    assert job_run(server, "echo kept > /var/lib/docker/mark").status_code == 200

    again = job_run(server, "cat /var/lib/docker/mark")
    assert (again.status_code, again.json()["output"]) == (200, "kept\n")

    off = job_run(server, "cat /var/lib/docker/mark", use_docker_cache="false")
    assert off.status_code == 400, "without the cache there is nothing at /var/lib/docker"
    other_image = job_run(server, "cat /var/lib/docker/mark", image=SH_OTHER)
    assert other_image.status_code == 400, "another image has a cache of its own"


def test_the_server_wide_runtime_is_the_runs_runtime(server: str) -> None:
    ran = job_run(server, "true")
    job = httpx.get(f"{server}/v1/jobs/{ran.headers['X-Jobdock-Job-Id']}", timeout=10).json()
    assert job["spec"]["container_runtime"] == "runc"
    assert job["spec"]["kill_grace"] == 60.0, "ConJob's maxKillTimeoutSeconds by default"


def test_remove_image_removes_the_image_unless_a_container_uses_it(
    server: str, images: engines.Engine
) -> None:
    rootfs = engines.busybox_rootfs()
    gone, used = "localhost/conjob-remove:1", "localhost/conjob-remove:2"
    for image in (gone, used):
        images.import_image(image, rootfs, ["sh", "-c"], None)

    def present(image: str) -> bool:
        with images.http() as http:
            return http.get(f"/images/{image}/json").status_code == 200

    assert job_run(server, "true", image=gone, remove_image="true").status_code == 200
    eventually(lambda: not present(gone), 30, "the image to be removed after the run")

    running = httpx.post(
        f"{server}/v1/jobs", json={"image": used, "command": ["sleep 30"]}, timeout=10
    ).json()
    eventually(
        lambda: httpx.get(f"{server}/v1/jobs/{running['id']}").json()["state"] == "running",
        30,
        "the other job of the image to run",
    )
    assert job_run(server, "true", image=used, remove_image="true").status_code == 200
    assert present(used), "another container uses the image: it stays"
    httpx.post(f"{server}/v1/jobs/{running['id']}/cancel", timeout=10)


# -- limits ---------------------------------------------------------------------------


def test_six_parallel_runs_with_a_limit_of_three_at_once_give_three_rejected(
    images: engines.Engine, tmp_path: Path
) -> None:
    server = serve(
        tmp_path,
        images,
        conjob_max_concurrent_runs="3",
        conjob_max_requests_per_second="9999",
    )
    try:
        # Long enough that every call arrives while three run, on a busy machine too.
        answers = in_parallel(server.url, 6, "sleep 4")
        rejected = [a for a in answers if a.status_code == 503]
        assert len(rejected) == 3, [a.status_code for a in answers]
        assert all(
            a.json()
            == {
                "conclusion": "REJECTED",
                "output": "",
                "exitCode": -1,
                "message": "Concurrent job limit exceeded. Please wait then try again.",
            }
            for a in rejected
        )
        assert sorted(a.status_code for a in answers) == [200] * 3 + [503] * 3
        assert len(jobs_of(server.url)) == 3, "a rejected call runs nothing"
    finally:
        server.stop()


def test_six_parallel_runs_with_three_a_second_give_three_rejected(
    images: engines.Engine, tmp_path: Path
) -> None:
    server = serve(
        tmp_path,
        images,
        conjob_max_concurrent_runs="9999",
        conjob_max_requests_per_second="3",
        max_kill_grace="2",
    )
    try:
        answers = in_parallel(server.url, 6, "true")
        rejected = [a for a in answers if a.json()["conclusion"] == "REJECTED"]
        assert len(rejected) == 3, [a.status_code for a in answers]
        assert {a.status_code for a in rejected} == {503}
        jobs = jobs_of(server.url)
        assert len(jobs) == 3
        assert {job["spec"]["kill_grace"] for job in jobs} == {2.0}, "the server's maximum"
    finally:
        server.stop()


def test_with_queue_runs_over_the_limit_wait_and_all_succeed(
    images: engines.Engine, tmp_path: Path
) -> None:
    server = serve(tmp_path, images, conjob_max_concurrent_runs="1", conjob_over_limit="queue")
    try:
        answers = in_parallel(server.url, 3, "sleep 0.5")
        assert [a.json()["conclusion"] for a in answers] == ["SUCCESS"] * 3
    finally:
        server.stop()


# -- timeouts -------------------------------------------------------------------------


def test_a_run_past_its_timeout_is_timed_out_only_when_the_stop_ends_it(
    images: engines.Engine, tmp_path: Path
) -> None:
    # ConJob's acceptance cases: past maxTimeoutSeconds, a job that ends on
    # its own within maxKillTimeoutSeconds keeps its outcome; one that is
    # killed is TIMED_OUT with -1. The jobs ignore SIGTERM, as ConJob's
    # sleep-job does as PID 1.
    server = serve(tmp_path, images, conjob_timeout="1", conjob_kill_grace="3")
    scripts = {
        "finishes": "trap '' TERM; sleep 2",
        "fails": "trap '' TERM; sleep 2; exit 4",
        "killed": "trap '' TERM; sleep 30",
        "stopped": "sleep 30",
    }
    try:
        with ThreadPoolExecutor(len(scripts)) as pool:
            answers = dict(
                zip(
                    scripts,
                    pool.map(lambda s: job_run(server.url, s), scripts.values()),
                    strict=True,
                )
            )
    finally:
        server.stop()
    seen = {
        name: (a.status_code, a.json()["conclusion"], a.json()["exitCode"])
        for name, a in answers.items()
    }
    assert seen == {
        "finishes": (200, "SUCCESS", 0),
        "fails": (400, "FAILURE", 4),
        "killed": (408, "TIMED_OUT", -1),
        "stopped": (408, "TIMED_OUT", -1),
    }
    assert answers["killed"].json()["message"] == "Job exceeded maximum allowed duration."


# -- secrets --------------------------------------------------------------------------


def test_conjob_secrets_reach_only_the_callers_runs_of_that_image_read_only(
    images: engines.Engine, tmp_path: Path
) -> None:
    server = serve(tmp_path, images, "--tokens", secret_key=generate_key())
    alice = {"Authorization": f"Bearer {make_token(tmp_path, 'alice')}"}
    bob = {"Authorization": f"Bearer {make_token(tmp_path, 'bob')}"}
    value = "this_is_a_secret"
    check = (
        "sha256sum /run/build/secrets/secrets | cut -d' ' -f1; cat /run/build/secrets/secrets; "
        "echo; touch /run/build/secrets/x 2>/dev/null || echo read-only"
    )
    absent = "test -e /run/build/secrets/secrets && echo present || echo none"
    try:
        stored = httpx.post(
            f"{server.url}/secrets",
            params={"image": SH},
            content=value.encode(),
            headers=alice,
            timeout=10,
        )
        assert stored.status_code == 200, stored.text

        own = job_run(server.url, check, headers=alice)
        digest = hashlib.sha256(value.encode()).hexdigest()
        assert own.json()["output"] == f"{digest}\n***\nread-only\n", "masked, read-only"
        assert job_run(server.url, absent, headers=bob).json()["output"] == "none\n"
        assert job_run(server.url, absent, headers=alice, image=SH_OTHER).json()["output"] == (
            "none\n"
        )

        # The docker cache is the caller's own too.
        assert job_run(server.url, "echo a > /var/lib/docker/a", headers=alice).status_code == 200
        assert job_run(server.url, "cat /var/lib/docker/a", headers=bob).status_code == 400

        bad = httpx.post(
            f"{server.url}/secrets", params={"image": "NOT VALID"}, content=b"x", headers=alice
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    finally:
        server.stop()
    assert value not in server.log()
