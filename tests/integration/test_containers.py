"""Image jobs through a real server and a real dockerd (started by the suite):
the same states, logs, stop, timeout and result as process jobs, plus what
only containers have (images, memory kills, caches, ConJob's /job/run, an
engine that goes away)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import engines
from jobdock import Client, Job, JobState, Reason, Stream
from jobdock.models import JobSpec
from jobdock.runtimes.base import AttemptInfo
from jobdock.runtimes.container import ContainerRuntime
from jobdock.settings import Settings
from jobdock.submit import new_job_id
from jobdock.vault import generate_key
from support import ServerProcess, eventually

BUSYBOX = engines.BUSYBOX
ECHO = "localhost/echo-job:1"


@pytest.fixture
def client(docker_server: ServerProcess) -> Iterator[Client]:
    with Client(docker_server.url) as c:
        yield c


def run(client: Client, **spec: object) -> Job:
    job = client.submit({"image": BUSYBOX, **spec})
    return client.wait(job.id, timeout=60)


def output(client: Client, job_id: str, stream: Stream | None = None) -> bytes:
    return b"".join(data for _, data in client.logs(job_id, stream=stream))


def running_again(client: Client, job_id: str, what: str) -> Job:
    """Wait until the job runs its second attempt."""
    return eventually(
        lambda: (j := client.get(job_id)).state is JobState.RUNNING and j.attempt == 2 and j,
        60,
        what,
    )


def test_an_image_job_reports_its_exit_code_and_keeps_its_streams_apart(client: Client) -> None:
    job = run(client, command=["sh", "-c", "echo out; echo err >&2; exit 3"])

    assert (job.state, job.reason, job.exit_code) == (JobState.FAILED, Reason.EXITED, 3)
    assert output(client, job.id, Stream.STDOUT) == b"out\n"
    assert output(client, job.id, Stream.STDERR) == b"err\n"
    assert job.spec.image == BUSYBOX


def test_an_image_without_a_tag_is_run_as_latest(client: Client) -> None:
    # Accepted as ':latest'; that tag does not exist here.
    job = client.submit({"image": "localhost/busybox", "pull": "never"})
    assert job.spec.image == "localhost/busybox:latest"
    assert client.wait(job.id, timeout=60).reason is Reason.IMAGE_NOT_FOUND


def test_input_reaches_an_image_job_on_stdin_and_env_is_set(client: Client) -> None:
    job = run(client, image=ECHO, stdin="foobar")
    assert (job.state, output(client, job.id)) == (JobState.SUCCEEDED, b"foobar")

    job = run(client, command=["sh", "-c", 'echo "$KEY $JOBDOCK_JOB_ID"'], env={"KEY": "VAL"})
    assert output(client, job.id) == f"VAL {job.id}\n".encode()


def test_a_job_over_its_memory_limit_ends_failed_with_reason_oom(client: Client) -> None:
    hog = "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"
    job = run(client, command=["sh", "-c", hog], resources={"memory": "32m"})

    assert (job.state, job.reason) == (JobState.FAILED, Reason.OOM)
    assert "out of memory" in (job.message or "")


def test_an_image_job_past_its_output_limit_is_stopped_and_records_no_accounting(
    client: Client,
) -> None:
    job = run(client, command=["sh", "-c", "yes jobdock"], output_limit="64k")

    assert (job.state, job.reason) == (JobState.FAILED, Reason.OUTPUT_LIMIT)
    assert len(output(client, job.id)) == 64 * 1024
    attempt = job.attempts[-1]
    assert (attempt.isolation, attempt.limits, attempt.peak_memory) == (None, None, None)


def test_a_missing_image_fails_with_image_not_found_and_the_engines_message(
    client: Client,
) -> None:
    job = run(client, image="localhost/no-such-image:1")

    assert (job.state, job.reason) == (JobState.FAILED, Reason.IMAGE_NOT_FOUND)
    assert "localhost/no-such-image:1" in (job.message or "")


def test_a_missing_image_is_retried_when_the_policy_names_image_not_found(
    client: Client,
) -> None:
    retry = {"max_attempts": 2, "on_reasons": ["image_not_found"], "backoff": {"initial": 0.1}}
    job = run(client, image="localhost/no-such-image:1", pull="never", retry=retry)

    assert (job.state, job.reason) == (JobState.FAILED, Reason.IMAGE_NOT_FOUND)
    assert [attempt.reason for attempt in job.attempts] == [Reason.IMAGE_NOT_FOUND] * 2


def test_stop_and_timeout_end_a_running_container(client: Client, dockerd: engines.Engine) -> None:
    job = client.submit({"image": BUSYBOX, "command": ["sleep", "300"], "kill_grace": 2})
    eventually(lambda: client.get(job.id).state is JobState.RUNNING, 30, "the job to start")
    client.cancel(job.id)
    stopped = client.wait(job.id, timeout=30)
    assert (stopped.state, stopped.reason) == (JobState.CANCELLED, Reason.CANCELLED)

    timed_out = run(client, command=["sleep", "300"], timeout=1, kill_grace=1)
    assert (timed_out.state, timed_out.reason) == (JobState.FAILED, Reason.TIMEOUT)
    assert not engines.wait_gone(dockerd, engines.NAMESPACE), "a finished job's container is kept"


def test_a_cache_outlives_the_run_that_filled_it(client: Client) -> None:
    cache = [{"name": "build", "path": "/cache"}]
    first = run(client, command=["sh", "-c", "echo kept > /cache/file"], caches=cache)
    second = run(client, command=["cat", "/cache/file"], caches=cache)
    other = run(client, command=["ls", "/cache"], caches=[{"name": "other", "path": "/cache"}])

    assert first.state is second.state is other.state is JobState.SUCCEEDED
    assert output(client, second.id) == b"kept\n"
    assert output(client, other.id) == b"", "another cache name must be another volume"


async def test_another_owners_cache_of_the_same_name_is_another_volume(
    dockerd: engines.Engine,
) -> None:
    runtime = ContainerRuntime(Settings(docker_host=dockerd.url, namespace=engines.NAMESPACE))
    spec = JobSpec(
        image=BUSYBOX,
        command=["sh", "-c", "cat /c/secret 2>/dev/null; echo mine > /c/secret"],
        caches=[{"name": "shared-name", "path": "/c"}],
    )
    seen = {}
    try:
        for owner in ("alice", "bob", "alice"):
            execution = await runtime.start(spec, b"", {}, AttemptInfo(new_job_id(), 1, owner))
            out = b""
            async for batch in execution.output():
                out += b"".join(data for _, data in batch)
            await execution.wait()
            await execution.close()
            seen.setdefault(owner, []).append(out)
    finally:
        await runtime.aclose()

    assert seen == {"alice": [b"", b"mine\n"], "bob": [b""]}


def test_bad_image_references_and_disallowed_settings_are_refused_at_submit(
    docker_server: ServerProcess,
) -> None:
    for spec, field in (
        ({"image": "Not A Ref"}, "image"),
        ({"image": BUSYBOX, "network": "host"}, "network"),
        ({"image": BUSYBOX, "container_runtime": "runsc"}, "container_runtime"),
        ({"image": BUSYBOX, "pull": "sometimes"}, "pull"),
        ({"command": ["true"], "user": "nobody"}, None),
    ):
        answer = httpx.post(f"{docker_server.url}/v1/jobs", json=spec)
        assert answer.status_code == 422, spec
        error = answer.json()["error"]
        assert error["code"] == "invalid_spec"
        if field is not None:
            assert error["field"] == field
            assert field in error["message"]


# -- ConJob's interface ------------------------------------------------------------


def test_conjob_run_answers_the_output_as_text_or_json(docker_server: ServerProcess) -> None:
    base = f"{docker_server.url}/job/run"

    ran = httpx.post(base, params={"image": ECHO, "pull": "absent"}, content=b"foobar", timeout=60)
    assert (ran.status_code, ran.text) == (200, "foobar\n")

    piped = httpx.post(
        base,
        params={"image": ECHO, "input": "stdin", "pull": "absent"},
        content=b"from stdin",
        headers={"Accept": "application/json"},
        timeout=60,
    )
    assert piped.status_code == 200
    assert piped.json() == {
        "conclusion": "SUCCESS",
        "output": "from stdin",
        "exitCode": 0,
        "message": "Job run successful.",
    }


def test_conjob_statuses_say_how_the_job_ended(docker_server: ServerProcess) -> None:
    base = f"{docker_server.url}/job/run"
    json_accept = {"Accept": "application/json"}

    failed = httpx.post(
        base, params={"image": BUSYBOX, "pull": "absent"}, content=b"-c", timeout=60
    )
    assert failed.status_code == 400, failed.text

    missing = httpx.get(
        base, params={"image": "localhost/nowhere", "pull": "never"}, headers=json_accept
    )
    assert missing.status_code == 404
    assert missing.json()["conclusion"] == "NOT_FOUND"

    invalid = httpx.get(base, params={"image": "NOT VALID"})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "invalid_spec"


# -- an engine that goes away ------------------------------------------------------


def test_a_job_whose_engine_goes_away_is_given_back_and_runs_when_it_returns(
    dockerd: engines.Engine, tmp_path: Path
) -> None:
    proxy = engines.SocketProxy(dockerd.socket).restore()
    server = ServerProcess(
        tmp_path, docker_host=proxy.url, namespace=engines.NAMESPACE, drain_seconds="0"
    ).start()
    try:
        with Client(server.url) as client:
            job = client.submit({"image": BUSYBOX, "command": ["sh", "-c", "echo up; sleep 300"]})
            eventually(lambda: b"up" in output(client, job.id), 30, "the job to start")

            proxy.cut()
            given_back = eventually(
                lambda: (j := client.get(job.id)).state is JobState.QUEUED and j,
                30,
                "the job to be given back",
            )
            assert "unreachable" in (given_back.message or "")
            assert given_back.attempts[0].reason is Reason.WORKER_LOST
            assert "unreachable" in server.log()

            proxy.restore()
            running_again(client, job.id, "the job to run again once the engine is back")
            client.cancel(job.id)
            client.wait(job.id, timeout=30)
    finally:
        server.stop()
        proxy.remove()


def test_a_restarted_server_settles_the_containers_of_the_jobs_it_was_running(
    dockerd: engines.Engine, tmp_path: Path
) -> None:
    server = engines.server_on(dockerd, tmp_path).start()
    with Client(server.url) as client:
        job = client.submit({"image": BUSYBOX, "command": ["sh", "-c", "echo up; sleep 300"]})
        eventually(lambda: b"up" in output(client, job.id), 30, "the job to start")
    first = dockerd.containers(engines.NAMESPACE)
    assert len(first) == 1

    server.stop(signal.SIGKILL)
    server.start()
    try:
        with Client(server.url) as client:
            running_again(client, job.id, "the lost attempt's job to run again")
            lost = client.get(job.id).attempts[0]
            assert lost.reason is Reason.WORKER_LOST
            eventually(
                lambda: first[0] not in dockerd.containers(engines.NAMESPACE),
                30,
                "the lost attempt's container to be removed",
            )
            client.cancel(job.id)
            client.wait(job.id, timeout=30)
    finally:
        server.stop()


def test_a_secret_reaches_an_image_job_as_env_and_file_and_is_masked(
    dockerd: engines.Engine, tmp_path: Path
) -> None:
    server = engines.server_on(dockerd, tmp_path, secret_key=generate_key()).start()
    value = "hunter2-in-a-container"
    try:
        with Client(server.url) as client:
            client.set_secret("db", value.encode())
            job = run(
                client,
                command=["sh", "-c", 'echo "$DB"; cat "$JOBDOCK_SECRETS_DIR/db.txt"'],
                secrets=[{"name": "db", "env": "DB", "file": "db.txt"}],
            )
            assert job.state is JobState.SUCCEEDED, job.message
            assert output(client, job.id) == b"***\n***"
            assert value not in client.get(job.id).model_dump_json()
    finally:
        server.stop()
    assert value not in server.log()


def test_a_container_is_never_privileged_and_cannot_gain_privileges(client: Client) -> None:
    job = run(client, command=["sh", "-c", "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status"])
    assert job.state is JobState.SUCCEEDED, job.message
    status = dict(line.split(":\t") for line in output(client, job.id).decode().splitlines())
    assert status["NoNewPrivs"] == "1"
    # Not every capability (as --privileged would give): the engine's default set.
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert int(status["CapEff"], 16) != (1 << (last_cap + 1)) - 1


async def test_the_worker_says_whether_a_containers_root_is_the_hosts(
    dockerd: engines.Engine,
) -> None:
    runtime = ContainerRuntime(Settings(docker_host=dockerd.url, namespace=engines.NAMESPACE))
    try:
        apart, said = await runtime.user_namespaces()
    finally:
        await runtime.aclose()
    # The tests' dockerd runs without userns-remap.
    assert not apart and "root in a container is root on the host" in said
    remapped = ContainerRuntime(Settings(docker_host=dockerd.url, container_userns="auto"))
    try:
        assert (await remapped.user_namespaces())[0]
    finally:
        await remapped.aclose()
