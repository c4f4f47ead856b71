"""The ``ec2`` provider: a machine is an EC2 instance (on-demand, or spot
with a ``max_price``) started with boto3, whose user data installs and starts
``jobdock agent`` (``ec2_boot.py``; docs/machines.md has the IAM policy).

Instances carry the tags ``jobdock-pool``, ``jobdock-server`` and
``jobdock-machine`` (set at launch, through TagSpecifications); ``machines()``
lists by them, terminated instances left out. Stopping is terminating.

Interruptions, seen from the server's side (the instance's own view, the
metadata's ``spot/instance-action``, is the agent's):

- a spot instance's request whose status says AWS takes it back
  (``marked-for-termination``, ``marked-for-stop``, ``marked-for-hibernation``:
  two minutes' notice; ``instance-terminated-by-price``, ``-no-capacity``, ...:
  already taken), from ``describe_spot_instance_requests``;
- an instance of the pool that left ``pending``/``running`` without this
  provider terminating it (its StateReason says why: a spot reclaim, or
  someone's stop or terminate).

boto3 blocks: every call runs in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from jobdock.machines.provider import (
    Interruption,
    MachineLaunch,
    Provider,
    ProviderError,
    ProviderMachine,
    ProviderState,
)
from jobdock.machines.providers.ec2_boot import user_data
from jobdock.pool_settings import Ec2Pool, PoolSettings

TAG_POOL = "jobdock-pool"
TAG_SERVER = "jobdock-server"
TAG_MACHINE = "jobdock-machine"
_STATES: dict[str, ProviderState] = {
    "pending": "pending",
    "running": "running",
    "shutting-down": "stopping",
    "stopping": "stopping",
    "stopped": "stopped",
}
_LIVE = ("pending", "running")
#: A spot request's status codes that mean AWS takes the instance back soon.
SPOT_MARKED = frozenset({"marked-for-termination", "marked-for-stop", "marked-for-hibernation"})
#: ... and those that mean it already did (not the owner's own stop or terminate).
SPOT_TAKEN = frozenset(
    {
        "instance-terminated-by-price",
        "instance-terminated-no-capacity",
        "instance-terminated-capacity-oversubscribed",
        "instance-terminated-launch-group-constraint",
        "instance-stopped-by-price",
        "instance-stopped-no-capacity",
        "instance-stopped-capacity-oversubscribed",
    }
)
#: AWS's notice before it takes a marked spot instance.
SPOT_NOTICE_SECONDS = 120.0


class Ec2Provider:
    """The instances of one pool in one region."""

    def __init__(
        self,
        pool: str,
        settings: Ec2Pool,
        client: Any,
        errors: tuple[type[Exception], ...],
        server: str | None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self._client = client
        self._errors = errors
        self._server = server
        #: Instances this provider terminated: their end is no interruption.
        self._terminating: set[str] = set()
        #: Instances seen pending or running at the last look.
        self._live: set[str] = set()
        #: Instances already reported as interrupted.
        self._reported: set[str] = set()

    async def start(self, launch: MachineLaunch) -> str:
        """Run one instance for the machine; its instance id."""
        if self._server is None:
            self._server = launch.tags.get(TAG_SERVER)
        params = self.run_parameters(launch)
        reservation = await self._call("run an instance", self._client.run_instances, **params)
        instance_id = str(reservation["Instances"][0]["InstanceId"])
        self._live.add(instance_id)
        return instance_id

    def run_parameters(self, launch: MachineLaunch) -> dict[str, Any]:
        """The arguments of ``run_instances`` for one machine."""
        settings = self.settings
        tags = {**settings.tags, **self._tags(launch), "Name": f"jobdock {launch.machine_id}"}
        tag_list = [{"Key": key, "Value": value} for key, value in tags.items()]
        params: dict[str, Any] = {
            "ImageId": settings.image_id,
            "InstanceType": settings.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            # boto3 base64-encodes it.
            "UserData": user_data(launch, settings.install, settings.agent_command),
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
            # A retried start of the same machine cannot run a second instance.
            "ClientToken": launch.machine_id,
            # A machine that shuts itself down is gone, not a stopped one billed for disks.
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpEndpoint": "enabled",
                "HttpPutResponseHopLimit": settings.metadata_hop_limit,
            },
        }
        if settings.spot:
            spot: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if settings.max_price:
                spot["MaxPrice"] = settings.max_price
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        if settings.subnet_id:
            params["SubnetId"] = settings.subnet_id
        if settings.security_group_ids:
            params["SecurityGroupIds"] = list(settings.security_group_ids)
        if settings.key_name:
            params["KeyName"] = settings.key_name
        if settings.iam_instance_profile:
            profile = settings.iam_instance_profile
            key = "Arn" if profile.startswith("arn:") else "Name"
            params["IamInstanceProfile"] = {key: profile}
        return params

    def _tags(self, launch: MachineLaunch) -> dict[str, str]:
        tags = {TAG_POOL: self.pool, TAG_MACHINE: launch.machine_id}
        if self._server is not None:
            tags[TAG_SERVER] = self._server
        return {**tags, **launch.tags}

    async def stop(self, provider_id: str) -> None:
        """Terminate the instance; one already gone is no error."""
        self._terminating.add(provider_id)
        try:
            await asyncio.to_thread(self._client.terminate_instances, InstanceIds=[provider_id])
        except self._errors as exc:
            if _code(exc) != "InvalidInstanceID.NotFound":
                raise self._error(f"cannot terminate {provider_id}", exc) from None

    async def machines(self) -> list[ProviderMachine]:
        """The pool's instances that are not terminated."""
        instances = await self._instances(list(_STATES))
        return [
            ProviderMachine(
                str(instance["InstanceId"]),
                _tag(instance, TAG_MACHINE),
                _STATES.get(_state(instance), "pending"),
            )
            for instance in instances
        ]

    async def interruptions(self) -> list[Interruption]:
        """Spot notices and instances gone from under jobdock since the last
        call, each once."""
        instances = await self._instances([*_STATES, "terminated"])
        found: list[Interruption] = []
        live = {str(i["InstanceId"]) for i in instances if _state(i) in _LIVE}
        for instance in instances:
            instance_id = str(instance["InstanceId"])
            if instance_id in live or instance_id not in self._live:
                continue
            if instance_id not in self._terminating:
                found.append(_ended_without_us(instance))
        spot = [str(i["InstanceId"]) for i in instances if i.get("InstanceLifecycle") == "spot"]
        if spot:
            found += spot_notices(await self._spot_requests(spot))
        self._live = live
        fresh = [i for i in found if i.provider_id not in self._reported]
        fresh = list({i.provider_id: i for i in fresh}.values())
        seen = {str(i["InstanceId"]) for i in instances}
        self._reported = (self._reported | {i.provider_id for i in fresh}) & seen
        # AWS lists a terminated instance for about an hour; then it is forgotten here too.
        self._terminating &= seen
        return fresh

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)

    # -- plumbing ---------------------------------------------------------------

    async def _instances(self, states: list[str]) -> list[dict[str, Any]]:
        filters = [
            {"Name": f"tag:{TAG_POOL}", "Values": [self.pool]},
            {"Name": "instance-state-name", "Values": states},
        ]
        if self._server is not None:
            filters.append({"Name": f"tag:{TAG_SERVER}", "Values": [self._server]})
        pages = await self._call("list instances", self._pages, "describe_instances", filters)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    async def _spot_requests(self, instance_ids: list[str]) -> list[dict[str, Any]]:
        filters = [{"Name": "instance-id", "Values": instance_ids}]
        pages = await self._call(
            "read spot requests", self._pages, "describe_spot_instance_requests", filters
        )
        return [r for page in pages for r in page.get("SpotInstanceRequests", [])]

    def _pages(self, operation: str, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        paginator = self._client.get_paginator(operation)
        return list(paginator.paginate(Filters=filters))

    async def _call(self, what: str, function: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return await asyncio.to_thread(functools.partial(function, *args, **kw))
        except self._errors as exc:
            raise self._error(f"cannot {what}", exc) from None

    def _error(self, what: str, exc: Exception) -> ProviderError:
        code = _code(exc)
        detail = _message(exc)
        return ProviderError(
            f"pool {self.pool!r} (ec2): {what}: {code + ': ' if code else ''}{detail}"
        )


def spot_notices(requests: Iterable[Mapping[str, Any]]) -> list[Interruption]:
    """The interruptions that spot requests' statuses announce (AWS's
    ``describe_spot_instance_requests`` answer)."""
    notices = []
    for request in requests:
        status = request.get("Status") or {}
        code = str(status.get("Code", ""))
        instance_id = request.get("InstanceId")
        if not instance_id or code not in SPOT_MARKED | SPOT_TAKEN:
            continue
        updated = status.get("UpdateTime")
        at = _epoch(updated)
        if at is not None and code in SPOT_MARKED:
            at += SPOT_NOTICE_SECONDS
        notices.append(Interruption(str(instance_id), at, f"spot: {code}"))
    return notices


def _ended_without_us(instance: Mapping[str, Any]) -> Interruption:
    reason = instance.get("StateReason") or {}
    code = str(reason.get("Code", ""))
    message = str(
        reason.get("Message") or instance.get("StateTransitionReason") or _state(instance)
    )
    kind = "spot" if code.startswith("Server.Spot") else "stopped outside jobdock"
    return Interruption(str(instance["InstanceId"]), None, f"{kind}: {message}")


def _state(instance: Mapping[str, Any]) -> str:
    return str((instance.get("State") or {}).get("Name", ""))


def _tag(instance: Mapping[str, Any], key: str) -> str | None:
    for tag in instance.get("Tags") or []:
        if tag.get("Key") == key:
            return str(tag.get("Value"))
    return None


def _epoch(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code", ""))


def _message(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Message") or exc)


def build(pool: PoolSettings, *, server: str | None = None) -> Provider:
    """The provider of an ``ec2`` pool (boto3's credential chain, or the
    pool's ``profile``). ``server`` names this jobdock server in the tags
    (else learned from the first launch's ``jobdock-server`` tag)."""
    settings = pool.ec2
    if settings is None:
        raise ProviderError(f"pool {pool.name!r}: provider 'ec2' needs [pools.ec2]")
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise ProviderError(
            f"pool {pool.name!r} (ec2): boto3 is not installed (pip install 'jobdock[ec2]')"
        ) from None
    try:
        session = boto3.session.Session(profile_name=settings.profile)
        client = session.client(
            "ec2",
            region_name=settings.region,
            endpoint_url=settings.endpoint_url,
            # A few quick retries: the autoscaler tries again on its next round.
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
    except (BotoCoreError, ClientError, ValueError) as exc:
        raise ProviderError(f"pool {pool.name!r} (ec2): {exc}") from None
    return Ec2Provider(pool.name, settings, client, (BotoCoreError, ClientError), server)
