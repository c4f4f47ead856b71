"""The ``command`` provider runs the operator's scripts: real ``sh``
scripts here, as an operator would write them (docs/machines.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobdock.machines.provider import MachineLaunch, Provider, ProviderError
from jobdock.machines.providers import open_provider
from jobdock.pool_settings import PoolSettings


def provider_of(**command: object) -> Provider:
    pool = PoolSettings.model_validate(
        {
            "name": "gpu",
            "provider": "command",
            "labels": {"pool": "gpu"},
            "command": {"start": ["true"], "stop": ["true"], **command},
        }
    )
    return open_provider(pool, server="api-1")


def launch() -> MachineLaunch:
    return MachineLaunch(
        machine_id="m-gpu-00aa",
        pool="gpu",
        labels={"pool": "gpu"},
        server_url="http://127.0.0.1:1",
        agent_token="jdk_secret",
        agent_args=["--server", "http://127.0.0.1:1", "--label", "pool=gpu"],
        agent_env={},
    )


def sh(script: str) -> list[str]:
    return ["sh", "-c", script, "script"]


async def test_start_gives_the_last_line_of_stdout_and_the_machine_its_environment(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "env"
    script = (
        f'echo "$JOBDOCK_URL $JOBDOCK_TOKEN $JOBDOCK_MACHINE_ID $JOBDOCK_POOL '
        f'$JOBDOCK_POOL_LABELS $JOBDOCK_AGENT_ARGS" > {seen}; echo starting; echo vm-7'
    )
    provider = provider_of(start=sh(script))

    provider_id = await provider.start(launch())

    assert provider_id == "vm-7"
    assert seen.read_text().split() == [
        "http://127.0.0.1:1",
        "jdk_secret",
        "m-gpu-00aa",
        "gpu",
        "pool=gpu",
        "--server",
        "http://127.0.0.1:1",
        "--label",
        "pool=gpu",
    ]


async def test_a_start_that_leaves_a_process_behind_returns_at_once() -> None:
    provider = provider_of(start=sh("sleep 30 & echo vm-1"))

    began = time.monotonic()
    provider_id = await provider.start(launch())

    assert provider_id == "vm-1"
    assert time.monotonic() - began < 10


async def test_a_failed_script_is_one_line_naming_the_pool_and_the_cause() -> None:
    provider = provider_of(stop=sh("echo working; echo 'no such vm' >&2; exit 3"))

    with pytest.raises(ProviderError) as raised:
        await provider.stop("vm-1")

    assert raised.value.message == "pool 'gpu' (command): stop: 'sh' exited with 3: no such vm"


async def test_a_script_past_its_timeout_is_killed_and_an_error() -> None:
    provider = provider_of(start=sh("sleep 30"), timeout=0.5)

    with pytest.raises(ProviderError, match=r"did not finish within 0.5 s"):
        await provider.start(launch())


async def test_a_missing_script_and_an_empty_start_are_errors() -> None:
    missing = provider_of(start=["/nonexistent/start"])
    silent = provider_of(start=["true"])

    with pytest.raises(ProviderError, match="cannot run '/nonexistent/start'"):
        await missing.start(launch())
    with pytest.raises(ProviderError, match="start printed no machine id"):
        await silent.start(launch())


async def test_interruptions_and_machines_are_what_the_optional_scripts_print() -> None:
    plain = provider_of()
    scripted = provider_of(interruptions=sh("echo vm-2; echo"), list_machines=sh("echo vm-1"))

    assert await plain.interruptions() == []
    assert [n.provider_id for n in await scripted.interruptions()] == ["vm-2"]
    assert [m.provider_id for m in await scripted.machines()] == ["vm-1"]
