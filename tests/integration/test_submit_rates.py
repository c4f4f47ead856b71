"""Rate limits on submits (docs/security.md, "Rate limits") against a real
server with token authentication: bursts from several users at once, each
refused past its own limit with 429 and Retry-After, none slowing another;
the whole server's limit; the CLI's one line saying when to retry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from jobdock.api.rates import limits_of
from jobdock.settings import Settings
from support import ServerProcess, jobdock, make_token

#: Each user: 5 submits at once, then one every 2 s.
OWNER_BURST = 5
USERS = ("alice", "bob", "dave", "erin")


def start(home: Path, **settings: str) -> tuple[ServerProcess, dict[str, str]]:
    tokens = {user: make_token(home, user) for user in USERS}
    server = ServerProcess(
        home, args=("--tokens",), submit_rate="0.5", submit_burst=str(OWNER_BURST), **settings
    ).start()
    return server, tokens


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    overrides = {"dave": {"rate": 0.5, "burst": 1}, "erin": {"rate": 0.001, "burst": 1}}
    server, tokens = start(
        tmp_path_factory.mktemp("rates"), submit_rate_overrides=json.dumps(overrides)
    )
    yield server, tokens
    server.stop()


def burst(server: ServerProcess, token: str, count: int) -> list[httpx.Response]:
    """``count`` submits at once (as many threads), each a job that does nothing."""
    with (
        httpx.Client(
            base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=30
        ) as client,
        ThreadPoolExecutor(count) as pool,
    ):
        return list(
            pool.map(lambda _: client.post("/v1/jobs", json={"command": ["true"]}), range(count))
        )


def statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(response.status_code for response in responses)


def test_one_user_over_its_limit_never_slows_another(
    limited: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, tokens = limited
    with ThreadPoolExecutor(2) as pool:
        alice_future = pool.submit(burst, server, tokens["alice"], 40)
        bob_future = pool.submit(burst, server, tokens["bob"], OWNER_BURST)
        alice, bob = alice_future.result(), bob_future.result()

    assert statuses(bob) == [201] * OWNER_BURST
    accepted = statuses(alice).count(201)
    # Her burst, and at most one more that the refill gave meanwhile.
    assert OWNER_BURST <= accepted <= OWNER_BURST + 1
    assert statuses(alice).count(429) == 40 - accepted
    for response in alice:
        if response.status_code == 429:
            error = response.json()["error"]
            assert error["code"] == "rate_limited"
            assert "of alice" in error["message"] and "retry in" in error["message"]
            assert 1 <= int(response.headers["retry-after"]) <= 2
            assert 0 < error["retry_after"] <= 2


def test_a_user_override_applies_and_other_routes_are_not_limited(
    limited: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, tokens = limited
    assert statuses(burst(server, tokens["dave"], 3)) == [201, 429, 429]
    headers = {"authorization": f"Bearer {tokens['dave']}"}
    for _ in range(20):
        assert httpx.get(f"{server.url}/v1/jobs", headers=headers).status_code == 200
    # A dispatch route is a submit too (no such template: refused before).
    dispatched = httpx.post(f"{server.url}/job/nothing", headers=headers, json={})
    assert dispatched.status_code == 429


def test_the_cli_says_when_to_retry_in_one_line(
    limited: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, tokens = limited
    env = {"JOBDOCK_URL": server.url, "JOBDOCK_TOKEN": tokens["erin"]}
    assert jobdock("run", "--detach", "--", "true", env=env).returncode == 0
    done = jobdock("run", "--detach", "--", "true", env=env)
    # 125: jobdock run could not submit (as docker run says it).
    assert done.returncode == 125, done.stdout
    assert done.stderr.count("\n") == 1
    assert "too many submits of erin" in done.stderr
    assert "retry in" in done.stderr


def test_the_servers_limit_is_shared_and_an_owners_refusals_spend_none_of_it(
    tmp_path: Path,
) -> None:
    server, tokens = start(tmp_path, submit_rate_server="0.5", submit_burst_server="12")
    try:
        alice = burst(server, tokens["alice"], 40)
        bob = burst(server, tokens["bob"], OWNER_BURST)
        # alice's 35 refusals took nothing of the server's 12: bob has his 5.
        assert statuses(bob) == [201] * OWNER_BURST
        left = 12 - statuses(alice).count(201) - OWNER_BURST
        dave = burst(server, tokens["dave"], OWNER_BURST)
        assert left <= statuses(dave).count(201) <= left + 1
        over = [response for response in dave if response.status_code == 429]
        assert over
        assert all("of this server" in r.json()["error"]["message"] for r in over)
    finally:
        server.stop()


def test_a_tokens_own_rate_replaces_its_users(
    limited: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, _ = limited
    # Made through the API by an admin, as the CLI's --submit-rate does on the store.
    root = make_token(server.home, "root", "--admin")
    bulk = make_token(server.home, "frank", "--submit-rate", "0.5", "--submit-burst", "12")
    plain = make_token(server.home, "frank")
    assert statuses(burst(server, bulk, 12)) == [201] * 12
    # frank's other token has frank's limit, and a bucket of its own.
    assert statuses(burst(server, plain, 8)).count(201) in (OWNER_BURST, OWNER_BURST + 1)
    made = httpx.post(
        f"{server.url}/v1/tokens",
        json={"user": "grace", "submit_rate": 0},
        headers={"authorization": f"Bearer {root}"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["info"]["submit_rate"] == 0
    assert statuses(burst(server, made.json()["token"], 20)) == [201] * 20
    for bad in ({"submit_rate": -1}, {"submit_burst": 3}, {"submit_rate": 1, "submit_burst": 0}):
        refused = httpx.post(
            f"{server.url}/v1/tokens",
            json={"user": "grace", **bad},
            headers={"authorization": f"Bearer {root}"},
        )
        assert refused.status_code == 422, refused.text
    done = jobdock("tokens", "create", "x", "--home", str(server.home), "--submit-burst", "2")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "submit rate" in done.stderr


def test_limits_from_settings() -> None:
    limits = limits_of(Settings(submit_rate=2, submit_rate_overrides={"ci": {"rate": 0}}))
    assert all(limits.take("ci") is None for _ in range(100))
    assert [limits.take("someone") is None for _ in range(3)] == [True, True, False]
    assert all(limits_of(Settings()).take("anyone") is None for _ in range(100))


def test_a_bad_rate_setting_stops_the_start_in_one_line(tmp_path: Path) -> None:
    done = jobdock("serve", "--home", str(tmp_path), env={"JOBDOCK_SUBMIT_RATE": "-1"})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "submit_rate" in done.stderr
