"""Who an agent is to the store: the worker ids an agent token may register
and act as, and what revoking such a token does (docs/agents.md).

An agent's worker id begins with its token's id (``agent-TOKENID-...``), so
every attempt it claims names the token that claimed it: the agent routes
check that prefix before any write an agent makes for an attempt, a
revoked token's attempts are found by it and lost at once, and an
interrupted machine's are handed back (docs/machines.md#interruptions).

Imports the auth principal, the store protocol and the foundation.
"""

from __future__ import annotations

import time

from jobdock.auth import Principal
from jobdock.errors import JobNotFound
from jobdock.models import JobState
from jobdock.store.protocol import Store

#: Every agent's worker id begins with this.
AGENT_WORKER_PREFIX = "agent-"


def worker_prefix(who: Principal) -> str:
    """How the worker ids of ``who``'s agents begin: with its agent token's
    id (without authentication, where there are no tokens: ``agent-``)."""
    if who.agent_token is None:
        return AGENT_WORKER_PREFIX
    return f"{AGENT_WORKER_PREFIX}{who.agent_token}-"


def token_prefix(token_id: str) -> str:
    """How the worker ids of the agents of token ``token_id`` begin."""
    return f"{AGENT_WORKER_PREFIX}{token_id}-"


def is_agent_worker(worker_id: str | None) -> bool:
    """Whether ``worker_id`` is an agent's (not an embedded or database worker's)."""
    return worker_id is not None and worker_id.startswith(AGENT_WORKER_PREFIX)


async def lose_attempts_of(store: Store, prefix: str, max_lost: int, now: float) -> int:
    """End the leases of the running attempts of every live worker whose id
    begins with ``prefix``, resolve them as the reaper would (``worker_lost``,
    requeued or failed) and record those workers stopped. Returns how many
    attempts were lost."""
    workers = await store.list_workers(0.0, now - 86400 * 365)
    mine = [w for w in workers if w.id.startswith(prefix) and w.stopped_at is None]
    ours: set[str] = set()
    for worker in mine:
        if worker.running:
            # A lease that ended a second ago: the reap below finds it expired.
            await store.heartbeat(worker.id, dict.fromkeys(worker.running, 0), now - 1, now)
            ours.update(worker.running)
        await store.unregister_worker(worker.id, now)
    if not ours:
        return 0
    lost = await store.reap_expired(now, max_lost)
    return sum(1 for attempt in lost if attempt.job_id in ours)


async def hand_back_attempts_of(store: Store, prefix: str, now: float) -> int:
    """End at once the running attempts of every live worker whose id begins
    with ``prefix`` (its machine is being reclaimed: a spot notice), recorded
    ``interrupted``, and queue their jobs again without counting those
    attempts against ``max_lost`` or the jobs' retries; record those workers
    stopped. The attempts' late reports are refused (fenced), as a lost
    attempt's are. Returns how many attempts were handed back."""
    workers = await store.list_workers(0.0, now - 86400 * 365)
    mine = [w for w in workers if w.id.startswith(prefix) and w.stopped_at is None]
    handed = 0
    for worker in mine:
        for job_id in worker.running:
            handed += await _hand_back(store, worker.id, job_id, now)
        await store.unregister_worker(worker.id, now)
    return handed


async def _hand_back(store: Store, worker_id: str, job_id: str, now: float) -> int:
    """Hand back the attempt of ``job_id`` that ``worker_id`` holds (1), or
    nothing if it holds none now (0): the job's attempt number is its fence."""
    try:
        job = await store.get_job(job_id)
    except JobNotFound:
        return 0
    held = [a for a in job.attempts if a.number == job.attempt and a.worker == worker_id]
    if job.state is not JobState.RUNNING or not held:
        return 0
    message = f"attempt {job.attempt} handed back: its machine is being reclaimed (interrupted)"
    state = await store.interrupt_attempt(job_id, job.attempt, message, now)
    return 0 if state is None else 1


async def revoke_token(store: Store, token_id: str, max_lost: int, actor: str) -> int:
    """Revoke a token for good; an agent token's running attempts are lost
    at once. Returns how many were (raises TokenNotFound)."""
    now = time.time()
    await store.revoke_token(token_id, now, actor)
    stored = await store.find_token(token_id)
    if stored is None or not stored.info.agent:
        return 0
    return await lose_attempts_of(store, token_prefix(token_id), max_lost, now)
