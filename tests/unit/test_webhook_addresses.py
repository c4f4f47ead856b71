"""Which webhook URLs an allow-list lets through: the same scheme, host and
port as a prefix, and a path under the prefix's; nothing that only looks
like an allowed address."""

from __future__ import annotations

import pytest

from jobdock.errors import InvalidSpec
from jobdock.models import JobSpec
from jobdock.settings import Settings
from jobdock.webhooks import allowed, checked_webhooks, signature

ALLOW = ["https://hooks.example.com/jobdock/", "http://127.0.0.1:9000"]


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/jobdock/build",
        "https://HOOKS.example.com:443/jobdock/",
        "http://127.0.0.1:9000/anything?x=1",
    ],
)
def test_urls_within_a_prefix_are_allowed(url: str) -> None:
    assert allowed(url, ALLOW)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/jobdock/build",  # another scheme
        "https://hooks.example.com/other",  # another path
        "https://hooks.example.com.evil.net/jobdock/",  # another host
        "https://hooks.example.com@evil.net/jobdock/",  # credentials, then the host
        "https://hooks.example.com:8443/jobdock/",  # another port
        "http://127.0.0.1:90001/",  # no port at all
        "http://127.0.0.1/",  # port 80
        "ftp://127.0.0.1:9000/",
        "not a url",
    ],
)
def test_urls_outside_every_prefix_are_not(url: str) -> None:
    assert not allowed(url, ALLOW)


def test_a_job_naming_none_gets_the_servers_default_and_others_are_checked() -> None:
    settings = Settings(webhooks=["http://10.0.0.1/internal"], webhook_allow=ALLOW)

    default = checked_webhooks(JobSpec(command=["true"]), settings)
    with pytest.raises(InvalidSpec, match=r"webhooks\[1\]"):
        checked_webhooks(
            JobSpec(command=["true"], webhooks=[f"{ALLOW[1]}/ok", "http://10.0.0.1/internal"]),
            settings,
        )

    assert default.webhooks == ["http://10.0.0.1/internal"], "the operator's own need no allowing"


def test_the_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    # RFC 4231's test case 2.
    assert signature(b"Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
