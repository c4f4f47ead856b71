"""The whole path of a job through a real server: submit -> store -> claim ->
process -> logs -> result, seen through the public Python client."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time

import httpx
import pytest

from jobdock import ApiError, Client, JobState, Reason, Stream
from support import ServerProcess, eventually


def run(client: Client, command: list[str], **spec: object):  # type: ignore[no-untyped-def]
    job = client.submit({"command": command, **spec})
    return client.wait(job.id, timeout=60)


def output(client: Client, job_id: str, stream: Stream | None = None) -> bytes:
    return b"".join(data for _, data in client.logs(job_id, stream=stream))


def test_exit_code_and_output_come_back(client: Client) -> None:
    job = run(client, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert job.state is JobState.FAILED
    assert (job.exit_code, job.signal, job.reason) == (3, None, Reason.EXITED)
    assert job.message == "exited with code 3"
    assert output(client, job.id, Stream.STDOUT) == b"out\n"
    assert output(client, job.id, Stream.STDERR) == b"err\n"
    assert job.attempts[0].stdout_bytes == 4 and job.attempts[0].stderr_bytes == 4


def test_zero_exit_succeeds(client: Client) -> None:
    job = run(client, ["true"])
    assert job.state is JobState.SUCCEEDED
    assert job.exit_code == 0
    assert job.started_at is not None and job.finished_at is not None
    assert job.created_at <= job.started_at <= job.finished_at


def test_a_signal_that_kills_the_job_is_reported(client: Client) -> None:
    job = run(client, ["sh", "-c", "kill -USR1 $$"])
    assert job.state is JobState.FAILED
    assert (job.exit_code, job.signal, job.reason) == (None, 10, Reason.SIGNALED)
    assert "SIGUSR1" in (job.message or "")


def test_fifty_megabytes_of_output_stay_separate_and_complete(client: Client) -> None:
    size = 50 * 1024 * 1024
    job = run(
        client,
        ["sh", "-c", f"seq 1 200000 >&2 & yes abcdefghi | head -c {size}; wait"],
    )
    assert job.state is JobState.SUCCEEDED
    stdout = output(client, job.id, Stream.STDOUT)
    stderr = output(client, job.id, Stream.STDERR)
    assert len(stdout) == size
    assert stdout == (b"abcdefghi\n" * (size // 10 + 1))[:size]
    assert stderr == "".join(f"{i}\n" for i in range(1, 200001)).encode()
    both = b"".join(data for _, data in client.logs(job.id))
    assert len(both) == len(stdout) + len(stderr)


def test_stdin_reaches_the_job(client: Client) -> None:
    data = os.urandom(300_000)
    job = client.submit(
        {
            "command": ["sha256sum"],
            "stdin_base64": base64.b64encode(data).decode(),
        }
    )
    job = client.wait(job.id, timeout=30)
    assert job.state is JobState.SUCCEEDED
    assert job.stdin_bytes == len(data)
    assert output(client, job.id).split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_env_and_working_directory_are_the_specs(client: Client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    job = run(
        client,
        ["sh", "-c", 'echo "$GREETING $JOBDOCK_JOB_ID"; pwd'],
        env={"GREETING": "hi"},
        cwd=str(tmp_path),
    )
    assert output(client, job.id) == f"hi {job.id}\n{tmp_path}\n".encode()


def test_two_followers_each_get_every_byte_in_order(client: Client) -> None:
    script = "for i in $(seq 1 3000); do echo line-$i; [ $((i % 500)) = 0 ] && sleep 0.1; done"
    job = client.submit({"command": ["sh", "-c", script]})
    received: dict[int, bytes] = {}

    def follow(n: int) -> None:
        with Client(client.url) as own:
            received[n] = b"".join(d for _, d in own.logs(job.id, follow=True))

    threads = [threading.Thread(target=follow, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    expected = "".join(f"line-{i}\n" for i in range(1, 3001)).encode()
    assert received == {0: expected, 1: expected}


def test_many_followers_of_a_slow_writer_each_get_all_of_it(client: Client) -> None:
    # Followers at the same place share their reads of the store: each
    # must still get every line, and one stream alone only its own.
    script = "for i in $(seq 1 100); do echo out-$i; echo err-$i >&2; sleep 0.01; done"
    job = client.submit({"command": ["sh", "-c", script]})
    received: dict[int, bytes] = {}

    def follow(n: int) -> None:
        with Client(client.url) as own:
            stream = Stream.STDERR if n == 0 else None
            pieces = own.logs(job.id, follow=True, stream=stream)
            received[n] = b"".join(d for _, d in pieces)

    threads = [threading.Thread(target=follow, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert received[0] == "".join(f"err-{i}\n" for i in range(1, 101)).encode()
    stored = output(client, job.id)
    assert sorted(stored.splitlines()) == sorted(
        [f"out-{i}".encode() for i in range(1, 101)] + [f"err-{i}".encode() for i in range(1, 101)]
    )
    assert all(received[n] == stored for n in range(1, 20)), "a follower missed output"


def test_a_follower_that_joins_late_starts_from_the_beginning(client: Client) -> None:
    job = client.submit({"command": ["sh", "-c", "echo first; sleep 0.5; echo second"]})
    eventually(lambda: client.get(job.id).state is JobState.RUNNING, what="job running")
    assert b"".join(d for _, d in client.logs(job.id, follow=True)) == b"first\nsecond\n"


def test_logs_from_an_offset(client: Client) -> None:
    job = run(client, ["sh", "-c", "printf 0123456789"])
    assert output(client, job.id) == b"0123456789"
    pieces = client.logs(job.id, stream=Stream.STDOUT, offset=4)
    assert b"".join(d for _, d in pieces) == b"456789"


def test_stop_ends_a_job_that_ignores_sigterm_after_the_grace_period(client: Client) -> None:
    job = client.submit(
        {
            "command": ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"],
            "kill_grace": 0.5,
        }
    )
    eventually(lambda: output(client, job.id) == b"ready\n", what="job ready")
    started = time.monotonic()
    stopping = client.cancel(job.id)
    assert stopping.state is JobState.RUNNING and stopping.cancel_requested
    job = client.wait(job.id, timeout=30)
    assert time.monotonic() - started >= 0.5
    assert job.state is JobState.CANCELLED
    assert (job.reason, job.signal) == (Reason.CANCELLED, 9)


def test_stop_ends_a_cooperative_job_with_sigterm(client: Client) -> None:
    job = client.submit({"command": ["sleep", "100"]})
    eventually(
        lambda: client.get(job.id).attempts and client.get(job.id).attempts[0].pid, what="pid"
    )
    client.cancel(job.id)
    job = client.wait(job.id, timeout=30)
    assert (job.state, job.signal) == (JobState.CANCELLED, 15)


def test_stopping_a_finished_job_is_refused_with_409(client: Client) -> None:
    job = run(client, ["true"])
    with pytest.raises(ApiError) as refused:
        client.cancel(job.id)
    assert (refused.value.status, refused.value.code) == (409, "illegal_transition")
    assert "succeeded" in refused.value.message


def test_timeout_stops_the_job(client: Client) -> None:
    job = run(client, ["sleep", "100"], timeout=0.3, kill_grace=1)
    assert job.state is JobState.FAILED
    assert job.reason is Reason.TIMEOUT
    assert "timed out after 0.3s" in (job.message or "")


def test_a_command_that_cannot_start_is_a_spawn_error(client: Client) -> None:
    job = run(client, ["no-such-program-jobdock"])
    assert (job.state, job.reason) == (JobState.FAILED, Reason.SPAWN_ERROR)
    assert "no-such-program-jobdock" in (job.message or "")
    assert "No such file" in (job.message or "")


def test_a_bad_working_directory_is_a_spawn_error(client: Client) -> None:
    job = run(client, ["true"], cwd="/no/such/dir")
    assert (job.state, job.reason) == (JobState.FAILED, Reason.SPAWN_ERROR)
    assert "/no/such/dir" in (job.message or "")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs/0123456789abcdef"),
        ("GET", "/v1/jobs/0123456789abcdef/logs"),
        ("GET", "/v1/jobs/0123456789abcdef/wait"),
        ("POST", "/v1/jobs/0123456789abcdef/cancel"),
    ],
)
def test_an_unknown_job_is_404(server: ServerProcess, method: str, path: str) -> None:
    response = httpx.request(method, server.url + path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "0123456789abcdef" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": ["true"], "imag": "x"}, "imag"),
        ({"command": []}, "command"),
        ({}, "command"),
        ({"command": ["true"], "env": {"1BAD": "x"}}, "env"),
        ({"command": ["true"], "cwd": "relative"}, "cwd"),
        ({"command": ["true"], "timeout": "soon"}, "timeout"),
        ({"command": ["true"], "labels": {"-x": "y"}}, "labels"),
        ({"command": ["true"], "stdin_base64": "###"}, "stdin_base64"),
    ],
)
def test_an_invalid_spec_is_422_naming_the_field(
    server: ServerProcess, body: dict, field: str
) -> None:  # type: ignore[type-arg]
    response = httpx.post(server.url + "/v1/jobs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_spec"
    assert error["field"] == field
    assert error["message"].startswith(f"{field}:")


def test_a_body_that_is_not_json_is_400(server: ServerProcess) -> None:
    response = httpx.post(server.url + "/v1/jobs", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_curl_style_form_content_type_is_read_as_json(server: ServerProcess) -> None:
    response = httpx.post(
        server.url + "/v1/jobs",
        content=b'{"command": ["true"]}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201
    assert response.json()["state"] == "queued"


def test_an_unknown_route_is_a_json_404(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_list_filters_and_paginates_newest_first(client: Client) -> None:
    marker = os.urandom(4).hex()
    ids = [
        client.submit({"command": ["true"], "labels": {"batch": marker, "n": str(i)}}).id
        for i in range(7)
    ]
    named = client.submit({"command": ["true"], "name": f"named-{marker}"})
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list(labels={"batch": marker}, limit=3, cursor=cursor)
        seen += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert [j.id for j in client.list(labels={"batch": marker, "n": "4"}).jobs] == [ids[4]]
    assert [j.id for j in client.list(name=f"named-{marker}").jobs] == [named.id]
    for job_id in ids:
        client.wait(job_id, timeout=30)
    succeeded = client.list(states=["succeeded"], labels={"batch": marker}, limit=100)
    assert len(succeeded.jobs) == 7
    assert client.list(states=["running"], labels={"batch": marker}).jobs == []


def test_a_bad_list_filter_is_422(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/v1/jobs", params={"label": "novalue"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "label"
    response = httpx.get(server.url + "/v1/jobs", params={"state": "sleeping"})
    assert response.status_code == 422


def test_wait_with_a_timeout_answers_the_current_state(client: Client) -> None:
    job = client.submit({"command": ["sleep", "100"]})
    waited = client.wait(job.id, timeout=0.2, raise_on_timeout=False)
    assert waited.state in (JobState.QUEUED, JobState.RUNNING)
    client.cancel(job.id)
    assert client.wait(job.id, timeout=30).state is JobState.CANCELLED


def test_synchronous_run_returns_state_exit_code_and_output(client: Client) -> None:
    result = client.run({"command": ["sh", "-c", "echo hi; echo oops >&2; exit 4"]})
    assert result.job.state is JobState.FAILED
    assert result.job.exit_code == 4
    assert (result.stdout, result.stderr, result.truncated) == ("hi\n", "oops\n", False)


def test_health_and_openapi_are_served(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}/logs", "/v1/run"} <= set(paths)
    assert httpx.get(server.url + "/docs").status_code == 200
