"""Waiting for a job to finish, woken by the store's change notifications."""

from __future__ import annotations

import time

from jobdock.models import Job
from jobdock.store.protocol import JobStore


async def wait_for_job(store: JobStore, job_id: str, timeout: float, poll_seconds: float) -> Job:
    """The job once it is in a terminal state, or as it is after ``timeout``
    seconds. Raises JobNotFound."""
    deadline = time.monotonic() + timeout
    while True:
        watch = store.events.watch_job(job_id)
        try:
            job = await store.get_job(job_id)
        except BaseException:
            watch.cancel()
            raise
        remaining = deadline - time.monotonic()
        if job.terminal or remaining <= 0:
            watch.cancel()
            return job
        await watch.wait(min(remaining, poll_seconds))
