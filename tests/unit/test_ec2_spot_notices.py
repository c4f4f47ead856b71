"""How the ec2 provider reads spot request statuses (AWS's answers to
``describe_spot_instance_requests``, in boto3's shape, as documented in
"Spot request status" of the EC2 user guide): moto never sends these, so
they are checked here on the answers themselves."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobdock.machines.provider import MachineLaunch, ProviderError
from jobdock.machines.providers.ec2 import SPOT_NOTICE_SECONDS, spot_notices
from jobdock.machines.providers.ec2_boot import user_data

UPDATED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def request(code: str, instance: str = "i-0abc") -> dict[str, object]:
    return {
        "SpotInstanceRequestId": "sir-1",
        "InstanceId": instance,
        "State": "active" if code.startswith("marked") else "closed",
        "Status": {"Code": code, "Message": "...", "UpdateTime": UPDATED},
    }


def test_a_request_marked_for_termination_is_a_notice_two_minutes_ahead() -> None:
    (notice,) = spot_notices([request("marked-for-termination")])

    assert notice.provider_id == "i-0abc"
    assert notice.at == UPDATED.timestamp() + SPOT_NOTICE_SECONDS
    assert notice.reason == "spot: marked-for-termination"


@pytest.mark.parametrize(
    "code", ["instance-terminated-by-price", "instance-terminated-no-capacity"]
)
def test_an_instance_aws_already_took_is_an_interruption_at_that_time(code: str) -> None:
    (notice,) = spot_notices([request(code)])

    assert notice.at == UPDATED.timestamp() and notice.reason == f"spot: {code}"


@pytest.mark.parametrize(
    "code", ["fulfilled", "instance-terminated-by-user", "request-canceled-and-instance-running"]
)
def test_a_fulfilled_request_or_the_owners_own_stop_is_no_interruption(code: str) -> None:
    assert spot_notices([request(code)]) == []


def test_user_data_beyond_ec2s_limit_is_refused_with_the_pools_name() -> None:
    launch = MachineLaunch("m-big-1", "big", {}, "http://s", "t", [], {"JOBDOCK_TOKEN": "t"})

    with pytest.raises(ProviderError, match=r"pool 'big' \(ec2\): the user data is"):
        user_data(launch, "echo x\n" * 3000, ["jobdock", "agent"])


def test_an_environment_value_with_a_newline_is_refused() -> None:
    launch = MachineLaunch("m-p-1", "p", {}, "http://s", "t", [], {"JOBDOCK_TOKEN": "a\nB=c"})

    with pytest.raises(ProviderError, match="JOBDOCK_TOKEN"):
        user_data(launch, "true", ["jobdock", "agent"])
