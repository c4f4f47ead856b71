"""The ``ec2`` machine provider against **moto's EC2 server**, a simulator
run here as a stand-in for AWS (no AWS can be reached from the tests). The
provider's code is what a user runs against real EC2; what these tests show
is the calls it makes (as moto's request recorder saw them and as moto's
EC2 API answers them), not how real EC2 behaves.

What moto cannot do, and what is tested instead:
- it never marks a spot request for termination (run_instances with spot
  market options makes a spot instance but no spot request): the server-side
  reading of spot request statuses is tested on AWS's documented answers in
  tests/unit/test_ec2_spot_notices.py, and here only that the provider asks
  for the spot requests of its spot instances;
- a reclaim is simulated with moto's own API: an instance of the pool
  stopped or terminated by another client than the provider.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import httpx
import pytest

from jobdock.machines.provider import MachineLaunch, Provider, ProviderError
from jobdock.machines.providers import ec2
from jobdock.machines.providers.ec2_boot import ENV_FILE
from jobdock.pool_settings import Ec2Pool, PoolSettings
from support import eventually, free_port

REGION = "eu-west-1"
#: One of the images moto knows in every region.
IMAGE = "ami-12c6146b"
SERVER_TAG = "jobdock-test-server"
#: moto's server, installed beside this interpreter (the dev extra).
MOTO_SERVER = str(Path(sys.executable).parent / "moto_server")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


class MotoServer:
    """``moto_server`` on loopback with its request recorder on."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.recording = base / "recording.jsonl"
        self.log = base / "moto.log"
        env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(self.recording)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=log,
                env=env,
            )
        eventually(self._answers, 30, "moto_server to answer")
        httpx.post(f"{self.url}/moto-api/recorder/start-recording").raise_for_status()

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"moto_server exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/moto-api/").status_code < 500
        except httpx.TransportError:
            return False

    def requests(self, action: str) -> list[dict[str, list[str]]]:
        """The form parameters of every request of ``action`` moto received."""
        text = httpx.get(f"{self.url}/moto-api/recorder/download-recording").text
        found = []
        for line in text.splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            params = parse_qs(body)
            if params.get("Action") == [action]:
                found.append(params)
        return found

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's credential chain reads these: moto accepts any."""
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def aws(moto: MotoServer) -> Any:
    """Another EC2 client, as the AWS console or another program would be."""
    return boto3.client("ec2", region_name=REGION, endpoint_url=moto.url)


def pool_of(moto: MotoServer, name: str = "spot-builders", **ec2_settings: Any) -> PoolSettings:
    settings = {
        "region": REGION,
        "instance_type": "m6i.large",
        "image_id": IMAGE,
        "endpoint_url": moto.url,
        "install": "pip install 'jobdock==0.1.0'",
        **ec2_settings,
    }
    return PoolSettings(
        name=name,
        provider="ec2",
        labels={"pool": name},
        ec2=Ec2Pool.model_validate(settings),
    )


def launch_of(pool: PoolSettings, machine_id: str, server: str = SERVER_TAG) -> MachineLaunch:
    url = "https://jobdock.example:8000"
    return MachineLaunch(
        machine_id=machine_id,
        pool=pool.name,
        labels=pool.labels,
        server_url=url,
        agent_token=f"jdk_agent_{machine_id}_secret",
        agent_args=["--server", url, *(f"--label={k}={v}" for k, v in pool.labels.items())],
        agent_env={
            "JOBDOCK_URL": url,
            "JOBDOCK_TOKEN": f"jdk_agent_{machine_id}_secret",
            "JOBDOCK_MACHINE_ID": machine_id,
        },
        tags={"jobdock-pool": pool.name, "jobdock-server": server, "jobdock-machine": machine_id},
    )


@pytest.fixture
async def providers() -> AsyncIterator[list[Provider]]:
    made: list[Provider] = []
    yield made
    for provider in made:
        for machine in await provider.machines():
            await provider.stop(machine.provider_id)
        await provider.close()


def provider_of(pool: PoolSettings, made: list[Provider], **kw: Any) -> Provider:
    provider = ec2.build(pool, **kw)
    made.append(provider)
    return provider


def described(aws: Any, instance_id: str) -> dict[str, Any]:
    answer = aws.describe_instances(InstanceIds=[instance_id])
    instance: dict[str, Any] = answer["Reservations"][0]["Instances"][0]
    return instance


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


async def test_an_on_demand_machine_is_an_instance_with_jobdocks_tags_and_user_data(
    moto: MotoServer, aws: Any, providers: list[Provider]
) -> None:
    pool = pool_of(moto, "builders", tags={"team": "ci"})
    provider = provider_of(pool, providers)

    instance_id = await provider.start(launch_of(pool, "m-builders-0001"))

    instance = described(aws, instance_id)
    assert instance["InstanceType"] == "m6i.large" and instance["ImageId"] == IMAGE
    assert "InstanceLifecycle" not in instance  # on-demand
    assert tags_of(instance) == {
        "jobdock-pool": "builders",
        "jobdock-server": SERVER_TAG,
        "jobdock-machine": "m-builders-0001",
        "Name": "jobdock m-builders-0001",
        "team": "ci",
    }
    (sent,) = moto.requests("RunInstances")
    assert not any(key.startswith("InstanceMarketOptions") for key in sent)
    assert sent["MetadataOptions.HttpTokens"] == ["required"]
    assert sent["TagSpecification.1.ResourceType"] == ["instance"]
    assert sent["ClientToken"] == ["m-builders-0001"]
    attribute = aws.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    script = base64.b64decode(attribute["UserData"]["Value"]).decode()
    assert script.startswith("#!/bin/sh\n")
    assert "JOBDOCK_TOKEN=jdk_agent_m-builders-0001_secret\n" in script
    assert f"chmod 0600 {ENV_FILE}" in script
    assert "pip install 'jobdock==0.1.0'" in script
    assert (
        "ExecStart=/usr/local/bin/jobdock agent --server https://jobdock.example:8000 "
        "--label=pool=builders" in script
    )
    assert "systemctl enable --now jobdock-agent.service" in script
    listed = await provider.machines()
    assert [(m.provider_id, m.machine_id, m.state) for m in listed] == [
        (instance_id, "m-builders-0001", "running")
    ]


async def test_a_spot_machine_asks_for_the_spot_market_with_the_pools_max_price(
    moto: MotoServer, aws: Any, providers: list[Provider]
) -> None:
    pool = pool_of(moto, "spot-builders", spot=True, max_price="0.05")
    provider = provider_of(pool, providers)

    instance_id = await provider.start(launch_of(pool, "m-spot-builders-0002"))

    assert described(aws, instance_id)["InstanceLifecycle"] == "spot"
    sent = [
        r for r in moto.requests("RunInstances") if r["ClientToken"] == ["m-spot-builders-0002"]
    ]
    assert len(sent) == 1
    assert sent[0]["InstanceMarketOptions.MarketType"] == ["spot"]
    assert sent[0]["InstanceMarketOptions.SpotOptions.MaxPrice"] == ["0.05"]
    assert sent[0]["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == [
        "terminate"
    ]


async def test_stop_terminates_and_the_machine_is_no_longer_listed(
    moto: MotoServer, aws: Any, providers: list[Provider]
) -> None:
    pool = pool_of(moto, "stoppers")
    provider = provider_of(pool, providers)
    instance_id = await provider.start(launch_of(pool, "m-stoppers-0003"))

    await provider.stop(instance_id)

    assert described(aws, instance_id)["State"]["Name"] == "terminated"
    assert await provider.machines() == []
    await provider.stop(instance_id)  # again: no error
    await provider.stop("i-0123456789abcdef0")  # never existed: no error


async def test_machines_are_listed_by_pool_and_server_tags_only(
    moto: MotoServer, aws: Any, providers: list[Provider]
) -> None:
    pool = pool_of(moto, "listers")
    mine = provider_of(pool, providers, server=SERVER_TAG)
    other_server = provider_of(pool, providers, server="another-jobdock")
    other_pool = provider_of(pool_of(moto, "others"), providers, server=SERVER_TAG)
    kept = await mine.start(launch_of(pool, "m-listers-0004"))
    await other_server.start(launch_of(pool, "m-listers-0005", server="another-jobdock"))
    await other_pool.start(launch_of(pool_of(moto, "others"), "m-others-0006"))
    aws.run_instances(ImageId=IMAGE, InstanceType="t3.micro", MinCount=1, MaxCount=1)

    assert [m.provider_id for m in await mine.machines()] == [kept]
    assert [m.machine_id for m in await other_server.machines()] == ["m-listers-0005"]
    assert [m.machine_id for m in await other_pool.machines()] == ["m-others-0006"]


async def test_an_instance_stopped_or_terminated_by_someone_else_is_an_interruption(
    moto: MotoServer, aws: Any, providers: list[Provider]
) -> None:
    pool = pool_of(moto, "reclaimed", spot=True, max_price="0.05")
    provider = provider_of(pool, providers)
    ours = await provider.start(launch_of(pool, "m-reclaimed-0007"))
    stopped = await provider.start(launch_of(pool, "m-reclaimed-0008"))
    terminated = await provider.start(launch_of(pool, "m-reclaimed-0009"))
    assert await provider.interruptions() == []

    await provider.stop(ours)
    aws.stop_instances(InstanceIds=[stopped])
    aws.terminate_instances(InstanceIds=[terminated])
    noticed = await provider.interruptions()

    assert sorted(i.provider_id for i in noticed) == sorted([stopped, terminated])
    assert all(i.reason.startswith("stopped outside jobdock: ") for i in noticed)
    assert await provider.interruptions() == []  # each notice once
    asked = moto.requests("DescribeSpotInstanceRequests")
    assert asked and asked[0]["Filter.1.Name"] == ["instance-id"]


async def test_an_unreachable_endpoint_is_a_provider_error_of_one_line(
    moto: MotoServer, providers: list[Provider]
) -> None:
    pool = pool_of(moto, "nowhere", endpoint_url=f"http://127.0.0.1:{free_port()}")
    provider = ec2.build(pool)

    with pytest.raises(ProviderError) as raised:
        await provider.start(launch_of(pool, "m-nowhere-0010"))

    assert raised.value.message.startswith("pool 'nowhere' (ec2): cannot run an instance: ")
    assert "\n" not in raised.value.message
    await provider.close()
