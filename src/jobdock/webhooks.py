"""Webhooks: URLs a job (or the template that made it, or the server by
default) names, POSTed the job's record when it ends (docs/operating.md).

- Only to addresses the operator allowed (``webhook_allow``): a job naming
  any other is refused at submit (422), so a user cannot make the server
  call into a network it can reach and they cannot. Redirects are not
  followed, for the same reason.
- Signed: ``X-Jobdock-Signature: sha256=HEX``, the HMAC-SHA256 of the body
  with ``webhook_secret``.
- Retried with backoff (``webhook_tries``, ``webhook_backoff`` doubled each
  try) until the receiver answers 2xx; every try is in the job's delivery
  log (``GET /v1/jobs/ID/webhooks``).
- Sent once per job by one of the servers sharing a store: each claims a
  job's webhooks for as long as their tries may take; one that dies meanwhile
  leaves them to another (so a receiver may, rarely, get one twice: the
  ``X-Jobdock-Delivery`` header is the same for each try of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from jobdock.correlation import for_job
from jobdock.errors import InvalidSpec, JobdockError
from jobdock.models import Job, JobSpec
from jobdock.models.jobs import WebhookDelivery
from jobdock.settings import Settings
from jobdock.store.protocol import JobStore, WebhookStore
from jobdock.version import __version__

_log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Jobdock-Signature"
EVENT = "job.ended"
#: Jobs whose webhooks one round takes on.
_BATCH = 16
#: The longest wait between two tries.
_MAX_WAIT = 3600.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


class WebhookStores(JobStore, WebhookStore, Protocol):
    """The roles of the store that webhooks use."""


def _origin_and_path(url: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], parts.path or "/"


def allowed(url: str, allow: list[str]) -> bool:
    """Whether ``url`` is within one of the ``allow`` prefixes: the same
    scheme, host and port, and a path that begins with the prefix's."""
    target = _origin_and_path(url)
    if target is None:
        return False
    for prefix in allow:
        entry = _origin_and_path(prefix)
        if entry is not None and entry[:3] == target[:3] and target[3].startswith(entry[3]):
            return True
    return False


def checked_webhooks(spec: JobSpec, settings: Settings) -> JobSpec:
    """The spec with the server's default webhooks if it names none; raises
    InvalidSpec for a URL that is not http(s) or not allowed."""
    if not spec.webhooks:
        if settings.webhooks:
            return spec.model_copy(update={"webhooks": list(settings.webhooks)})
        return spec
    for index, url in enumerate(spec.webhooks):
        if _origin_and_path(url) is None:
            raise InvalidSpec(
                f"webhooks[{index}]: {url!r} is not an http or https URL", field="webhooks"
            )
        if not allowed(url, settings.webhook_allow):
            raise InvalidSpec(
                f"webhooks[{index}]: {url!r} is not an address this server sends webhooks to "
                "(webhook_allow)",
                field="webhooks",
            )
    return spec


def _wait_before(number: int, backoff: float) -> float:
    """The wait before try ``number`` (2 or later): the backoff, doubled each try."""
    return float(min(backoff * 2 ** (number - 2), _MAX_WAIT))


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Jobdock-Signature`` of ``body``: ``sha256=`` and the hex HMAC."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def body_of(job: Job) -> bytes:
    """What a webhook POSTs: the event and the job's record."""
    return json.dumps({"event": EVENT, "job": job.model_dump(mode="json")}).encode()


class Webhooks:
    """Sends the webhooks of jobs that ended, until stopped (one per node)."""

    def __init__(self, store: WebhookStores, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._secret = (
            settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret else None
        )
        self._loop: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    @property
    def _interval(self) -> float:
        return min(self.settings.poll_seconds, 1.0)

    @property
    def _claim_seconds(self) -> float:
        """How long one job's webhooks may take, every try of each (they are
        sent side by side), and a margin."""
        settings = self.settings
        waits = sum(
            _wait_before(n + 1, settings.webhook_backoff) for n in range(settings.webhook_tries)
        )
        return float(waits + settings.webhook_tries * settings.webhook_timeout + 60.0)

    async def start(self) -> None:
        """Begin sending, where webhooks are configured (a node without any
        webhook setting sends none: it could not sign them)."""
        settings = self.settings
        if not (settings.webhook_allow or settings.webhooks or settings.webhook_secret):
            return
        self._client = httpx.AsyncClient(
            timeout=self.settings.webhook_timeout, follow_redirects=False, trust_env=False
        )
        self._loop = asyncio.create_task(self._run(), name="jobdock-webhooks")

    async def stop(self) -> None:
        """Stop sending; webhooks not yet sent are left to the next start
        (or another server), once their claim runs out."""
        tasks = [task for task in (self._loop, *self._sending) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            now = time.time()
            try:
                due = await self.store.claim_webhooks(now, now + self._claim_seconds, _BATCH)
            except JobdockError as exc:
                _log.warning("cannot read the webhooks due: %s", exc)
                due = []
            for job_id in due:
                task = asyncio.create_task(self._send_all(job_id))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            await asyncio.sleep(self._interval)

    async def _send_all(self, job_id: str) -> None:
        with for_job(job_id):
            try:
                job = await self.store.get_job(job_id)
                body = body_of(job)
                await asyncio.gather(*(self._send(job, url, body) for url in job.spec.webhooks))
                await self.store.webhooks_sent(job_id)
            except JobdockError as exc:
                # Left claimed: tried again when the claim runs out.
                _log.warning("cannot send the webhooks of job %s: %s", job_id, exc)

    def _headers(self, job: Job, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"jobdock/{__version__}",
            "X-Jobdock-Event": EVENT,
            "X-Jobdock-Delivery": f"{job.id}-{job.attempt}",
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        if job.trace_id:
            headers["X-B3-TraceId"] = job.trace_id
        return headers

    async def _send(self, job: Job, url: str, body: bytes) -> None:
        settings = self.settings
        headers = self._headers(job, body)
        for number in range(1, settings.webhook_tries + 1):
            delivery = await self._try(url, body, headers, number)
            await self.store.record_delivery(job.id, delivery)
            if delivery.ok:
                return
            if number < settings.webhook_tries:
                await asyncio.sleep(_wait_before(number + 1, settings.webhook_backoff))
        _log.warning(
            "webhook %s of job %s failed %d times; giving up", url, job.id, settings.webhook_tries
        )

    async def _try(
        self, url: str, body: bytes, headers: dict[str, str], number: int
    ) -> WebhookDelivery:
        assert self._client is not None
        began, at = time.monotonic(), datetime.now(UTC)
        status, error = None, None
        try:
            response = await self._client.post(url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return WebhookDelivery(
            url=url,
            try_number=number,
            at=at,
            status=status,
            ok=error is None,
            error=error,
            seconds=round(time.monotonic() - began, 6),
        )
