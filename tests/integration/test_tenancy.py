"""One user cannot get in another's way on a real server with tokens:
concurrency keys and schedule names are per owner, the workers list shows
only your own jobs, and a job that ignores SIGTERM can be killed at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_auth import Users

from jobdock import ApiError, Client, JobState
from jobdock.models import JobSpec, Reason
from jobdock.store import NewJob
from jobdock.store.sql import SqlStore
from jobdock.submit import new_job_id
from jobdock.vault import generate_key
from support import ServerProcess, eventually, jobdock, make_token

#: A job that ignores SIGTERM: only SIGKILL ends it (once it has said "ready").
STUBBORN = ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"]


def ignoring_sigterm(client: Client, job_id: str) -> None:
    """Wait until the STUBBORN job runs and ignores SIGTERM: a SIGTERM sent
    as it starts, before its trap, would end it (on a busy machine)."""
    eventually(lambda: b"ready" in b"".join(data for _, data in client.logs(job_id)), 30)


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    """A server with tokens for alice, bob and an admin; kill_grace at most
    a minute, and the key 'db' shared by everyone."""
    home = tmp_path_factory.mktemp("tenancy")
    server = ServerProcess(
        home,
        args=["--tokens"],
        max_kill_grace="1m",
        shared_concurrency_keys='["db"]',
        secret_key=generate_key(),
    )
    tokens = {user: make_token(home, user) for user in ("alice", "bob")}
    tokens["root"] = make_token(home, "root", "--admin")
    server.start()
    yield Users(server, tokens)
    server.stop()


def test_another_users_job_under_your_key_does_not_hold_back_yours(users: Users) -> None:
    with users.client("alice") as alice, users.client("bob") as bob:
        squatter = bob.submit(
            {"command": ["sleep", "60"], "concurrency_key": "alice-deploy", "kill_grace": 0.1}
        )
        eventually(lambda: bob.get(squatter.id).state is JobState.RUNNING, 30)

        deploy = alice.submit({"command": ["true"], "concurrency_key": "alice-deploy"})

        assert alice.wait(deploy.id, timeout=20).state is JobState.SUCCEEDED
        bob.cancel(squatter.id)


def test_a_shared_key_is_one_count_for_everyone(users: Users) -> None:
    with users.client("alice") as alice, users.client("bob") as bob:
        hers = alice.submit(
            {"command": ["sleep", "60"], "concurrency_key": "db", "kill_grace": 0.1}
        )
        eventually(lambda: alice.get(hers.id).state is JobState.RUNNING, 30)
        his = bob.submit({"command": ["true"], "concurrency_key": "db"})

        assert bob.wait(his.id, timeout=1, raise_on_timeout=False).state is JobState.QUEUED, (
            "he waits for hers"
        )
        alice.cancel(hers.id)
        assert bob.wait(his.id, timeout=30).state is JobState.SUCCEEDED


def test_the_workers_list_shows_a_user_only_their_own_running_jobs(users: Users) -> None:
    with users.client("alice") as alice, users.client("bob") as bob, users.client("root") as root:
        hers = alice.submit({"command": ["sleep", "60"], "kill_grace": 0.1})
        his = bob.submit({"command": ["sleep", "60"], "kill_grace": 0.1})
        eventually(
            lambda: root.get(hers.id).state == root.get(his.id).state == JobState.RUNNING, 30
        )

        [seen_by_bob] = bob.workers()
        [seen_by_root] = root.workers()

        assert seen_by_bob.running == [his.id], "alice's job ids are hers"
        assert seen_by_bob.busy == 2, "the count of everyone's jobs says how busy it is"
        assert set(seen_by_root.running) == {hers.id, his.id}
        listed = jobdock(
            "workers", env={"JOBDOCK_URL": users.server.url, "JOBDOCK_TOKEN": users.tokens["bob"]}
        )
        assert listed.returncode == 0, listed.stderr
        assert "2/" in listed.stdout and hers.id not in listed.stdout
        alice.cancel(hers.id)
        bob.cancel(his.id)


def test_schedule_names_are_each_users_own(users: Users) -> None:
    def nightly(command: str) -> dict[str, object]:
        return {"name": "nightly", "cron": "0 3 * * *", "job": {"command": [command]}}

    with users.client("alice") as alice, users.client("bob") as bob, users.client("root") as root:
        alice.add_schedule(nightly("true"))

        bobs = bob.add_schedule(nightly("false"))

        assert bobs.owner == "bob", "alice's name neither collides with his nor shows"
        with pytest.raises(ApiError) as again:
            alice.add_schedule(nightly("true"))
        assert again.value.status == 409
        assert users.http("bob", "GET", "/v1/schedules/nightly").json()["job"]["command"] == [
            "false"
        ]
        assert users.http("bob", "GET", "/v1/schedules/nightly?owner=alice").status_code == 404
        bob.pause_schedule("nightly")
        hers = users.http("root", "GET", "/v1/schedules/nightly?owner=alice").json()
        assert (hers["owner"], hers["paused"]) == ("alice", False)
        root.remove_schedule("nightly", owner="bob")
        assert [s.owner for s in root.schedules()] == ["alice"]
        alice.remove_schedule("nightly")


def test_a_kill_grace_above_the_servers_maximum_is_refused(users: Users) -> None:
    answer = users.http("alice", "POST", "/v1/jobs", json={"command": ["true"], "kill_grace": 3600})

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["field"] == "kill_grace"
    assert "60 seconds" in error["message"]


@pytest.mark.parametrize("who", ["root", "alice"])
def test_a_job_that_ignores_sigterm_is_killed_at_once(users: Users, who: str) -> None:
    with users.client("alice") as alice, users.client(who) as killer:
        job = alice.submit({"command": STUBBORN, "kill_grace": "1m"})
        ignoring_sigterm(alice, job.id)
        alice.cancel(job.id)  # SIGTERM, ignored: a minute's grace begins
        asked = time.monotonic()

        killer.cancel(job.id, kill=True)
        done = alice.wait(job.id, timeout=30)

        assert time.monotonic() - asked < 10, "it did not wait out its grace"
        assert (done.state, done.reason) == (JobState.CANCELLED, Reason.CANCELLED)


def test_jobdock_kill_ends_a_job_at_once(users: Users) -> None:
    env = {"JOBDOCK_URL": users.server.url, "JOBDOCK_TOKEN": users.tokens["alice"]}
    with users.client("alice") as alice:
        job = alice.submit({"command": STUBBORN, "kill_grace": "1m"})
        ignoring_sigterm(alice, job.id)

        done = jobdock("stop", "--now", job.id, env=env)

        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == job.id
        assert alice.get(job.id).state is JobState.CANCELLED


def test_a_secret_printed_in_base64_reversed_or_without_its_newline_is_masked(
    users: Users,
) -> None:
    secret = "p>w?d~~~correct-horse"
    script = (
        'printf "%s" "$PW" | base64; printf "%s" "$PW" | base64 | tr "+/" "-_" | tr -d =; '
        'printf "xy%s" "$PW" | base64; printf "%s" "$PW" | rev; echo; '
        # Split across two pieces of output, and without the stored newline.
        'printf "%s" "$PW" | base64 | head -c 9; sleep 0.3; '
        'printf "%s" "$PW" | base64 | tail -c +10; printf "[%s]" "$(printf "%s" "$PW")"'
    )
    with users.client("alice") as alice:
        alice.set_secret("pw", (secret + "\n").encode())

        result = alice.run(
            {"command": ["sh", "-c", script], "secrets": [{"name": "pw", "env": "PW"}]}
        )

    assert result.job.state is JobState.SUCCEEDED, result
    lines = result.stdout.splitlines()
    assert lines[:2] == ["***", "***"]
    assert "***" in lines[2] and len(lines[2].replace("*", "")) <= 5, "only edge characters"
    assert lines[3:] == ["***", "", "***", "[***]"]


def test_a_stored_job_with_a_longer_grace_gets_only_the_servers_maximum(
    tmp_path: Path,
) -> None:
    """A job stored before the maximum was lowered (here: written to the
    store directly) is killed after max_kill_grace, not its own grace."""
    server = ServerProcess(tmp_path, max_kill_grace="1s").start()
    try:
        spec = JobSpec(command=STUBBORN, kill_grace=3600)

        async def store_job() -> str:
            async with SqlStore(f"sqlite:///{tmp_path}/jobdock.db") as store:
                return (await store.create_job(NewJob(new_job_id(), spec, b"", time.time()))).id

        job_id = asyncio.run(store_job())
        with Client(server.url) as client:
            ignoring_sigterm(client, job_id)
            asked = time.monotonic()

            client.cancel(job_id)
            done = client.wait(job_id, timeout=60)

        assert done.state is JobState.CANCELLED
        assert time.monotonic() - asked < 15, "it was given the server's maximum grace"
    finally:
        server.stop()
