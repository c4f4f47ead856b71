"""What the Store contract suites do to a store: submit a job, claim it, end
it, all at fixed times (``T0``, leases) rather than waited for.
"""

from __future__ import annotations

from typing import Any

from jobdock.models import ANONYMOUS, Job, JobSpec, JobState, Reason, Stream
from jobdock.store import Claim, NewJob, Outcome, Store
from jobdock.submit import new_job_id

T0 = 1_700_000_000.0
LEASE = 30.0
AFTER_LEASE = T0 + LEASE + 1
OUT, ERR = Stream.STDOUT, Stream.STDERR


async def submit(
    store: Store, *, now: float = T0, stdin: bytes = b"", owner: str = ANONYMOUS, **fields: Any
) -> Job:
    spec = JobSpec(**{"command": ["true"], **fields})
    return await store.create_job(NewJob(new_job_id(), spec, stdin, now, owner))


async def claim(store: Store, worker: str = "w1", now: float = T0, lease: float = LEASE) -> Claim:
    claims = await store.claim_jobs(worker, 1, now, lease)
    assert len(claims) == 1, f"expected one job to claim, got {claims}"
    return claims[0]


def exited(code: int, at: float = T0 + 5) -> Outcome:
    return Outcome(
        state=JobState.SUCCEEDED if code == 0 else JobState.FAILED,
        reason=Reason.EXITED,
        message=f"exited with code {code}",
        finished_at=at,
        exit_code=code,
    )
