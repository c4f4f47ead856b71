"""Why a queued job does not start: no live worker offers what it requires,
a container engine for an image job, or the labels of its ``requires``.
A job that a machine pool's labels cover does not wait for a reason: the
autoscaler starts a machine for it (docs/machines.md).

Said when a job is read (``waiting_reason``), so that a user whose job sits
queued learns why, and by ``/job/run`` before it waits on a job that would
never start. What this server knows: the workers that share its store, alive
by their heartbeats, with the labels they registered; and of its own embedded
worker, whether its engine answers now (a worker elsewhere whose engine went
away still registers the container label, so only its claims stop).

Imports the store's worker role, the settings and the foundation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from jobdock.models import CONTAINER_LABEL, Job, JobSpec, JobState
from jobdock.pool_settings import PoolSettings, pool_of
from jobdock.settings import Settings
from jobdock.store.protocol import WorkerStore

#: How long the live workers' labels are reused: a listing of jobs reads them
#: once, and a burst of reads once a second.
FRESH_SECONDS = 1.0

NO_WORKER = (
    "no live worker: nothing runs jobs from this store (start 'jobdock worker', "
    "or 'jobdock serve' without --no-worker)"
)


@dataclass(frozen=True, slots=True)
class LocalWorker:
    """This server's embedded worker: its id, the labels it claims with now,
    and why it runs no image jobs now (None: it does)."""

    id: str
    offers: Callable[[], dict[str, str]]
    no_images: Callable[[], str | None]


def reason_of(
    spec: JobSpec,
    offers: list[dict[str, str]],
    no_images: str | None,
    pools: Sequence[PoolSettings] = (),
) -> str | None:
    """Why a queued job of ``spec`` cannot start on workers offering ``offers``
    (one label set per live worker), or None when one of them could run it or
    one of ``pools`` starts a machine for it; ``no_images``: what this server
    says of its own engine, if it has none."""
    needed = spec.requirements()
    if any(needed.items() <= offer.items() for offer in offers):
        return None
    if pool_of(needed, pools) is not None:
        return None
    if not offers:
        return NO_WORKER
    if spec.image is not None and not any(CONTAINER_LABEL in offer for offer in offers):
        detail = no_images or "no live worker has a container engine configured"
        return f"no container engine: no worker here can run image jobs ({detail})"
    return f"no live worker matches requires {json.dumps(spec.requires, sort_keys=True)}"


class Waiting:
    """Says why queued jobs wait, from the live workers (read at most once
    each ``FRESH_SECONDS``)."""

    def __init__(
        self, store: WorkerStore, settings: Settings, local: LocalWorker | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self._local = local
        self._read_at = float("-inf")
        self._workers: list[tuple[str, dict[str, str]]] = []

    async def explain(self, jobs: Iterable[Job]) -> None:
        """Set ``waiting_reason`` on each queued job of ``jobs`` that cannot start."""
        queued = [job for job in jobs if job.state is JobState.QUEUED]
        if not queued:
            return
        offers = await self._live_offers()
        no_images = self._local.no_images() if self._local is not None else None
        for job in queued:
            job.waiting_reason = reason_of(job.spec, offers, no_images, self._settings.pools)

    async def reason(self, spec: JobSpec) -> str | None:
        """Why a job of ``spec`` would wait, if it were submitted now."""
        no_images = self._local.no_images() if self._local is not None else None
        return reason_of(spec, await self._live_offers(), no_images, self._settings.pools)

    async def _live_offers(self) -> list[dict[str, str]]:
        now = time.time()
        if now - self._read_at >= FRESH_SECONDS:
            since = now - self._settings.lease_seconds
            found = await self._store.list_workers(since, since)
            self._workers = [(w.id, w.labels) for w in found if w.state == "alive"]
            self._read_at = now
        return [self._offer(worker_id, labels) for worker_id, labels in self._workers]

    def _offer(self, worker_id: str, labels: dict[str, str]) -> dict[str, str]:
        """What a worker claims with: this server's own says it now."""
        if self._local is not None and worker_id == self._local.id:
            return self._local.offers()
        return labels
