"""Interruption notices: a URL the agent polls that answers 404 while its
machine is safe and 200 once the machine is to be reclaimed, as EC2's
``/latest/meta-data/spot/instance-action`` does for a spot instance
(docs/machines.md#interruptions).

Under EC2's metadata layout (a path beginning ``/latest/``) the poll asks for
an IMDSv2 session token first and sends it; where none is given (IMDSv1, or
another service) it polls without one.

Imports httpx only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

import httpx

_log = logging.getLogger(__name__)

#: How often the URL is asked.
POLL_SECONDS = 2.0
#: How long each answer may take.
ANSWER_SECONDS = 2.0
#: How long an IMDSv2 token is asked for (and kept, less a minute).
TOKEN_TTL_SECONDS = 21600
#: The most of a notice's body that is kept (for the log).
MAX_NOTICE = 1000


class _Token:
    """An IMDSv2 session token for URLs under EC2's metadata layout."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        parts = urlsplit(url)
        self._url = (
            f"{parts.scheme}://{parts.netloc}/latest/api/token"
            if parts.path.startswith("/latest/")
            else None
        )
        self._http = http
        self._value: str | None = None
        self._until = 0.0

    async def headers(self) -> dict[str, str]:
        """The token's header, or none (IMDSv1, or not EC2's layout)."""
        if self._url is None:
            return {}
        if self._value is None or time.monotonic() > self._until:
            self._value = await self._ask(self._url)
            self._until = time.monotonic() + TOKEN_TTL_SECONDS - 60
        return {} if self._value is None else {"X-aws-ec2-metadata-token": self._value}

    def forget(self) -> None:
        """The token was refused: ask for a new one next time."""
        self._value = None

    async def _ask(self, url: str) -> str | None:
        ttl = {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)}
        try:
            response = await self._http.put(url, headers=ttl)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return response.text.strip() or None


async def wait_for_notice(url: str, interval: float = POLL_SECONDS) -> str:
    """Poll ``url`` every ``interval`` seconds until it answers 200; return
    what it said (EC2's ``{"action": "terminate", "time": ...}``). A 404 is
    no notice; any other answer, or none, is logged once and polled again."""
    complained = False
    async with httpx.AsyncClient(timeout=ANSWER_SECONDS) as http:
        token = _Token(http, url)
        while True:
            try:
                response = await http.get(url, headers=await token.headers())
                if response.status_code == 200:
                    return response.text[:MAX_NOTICE]
                if response.status_code == 401:
                    token.forget()
                elif response.status_code != 404 and not complained:
                    complained = True
                    _log.warning("interruption URL %s answered %d", url, response.status_code)
            except httpx.HTTPError as exc:
                if not complained:
                    complained = True
                    _log.warning("interruption URL %s cannot be reached: %r", url, exc)
            await asyncio.sleep(interval)
