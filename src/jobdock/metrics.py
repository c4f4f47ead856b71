"""Prometheus metrics of jobs and workers, read from the store at each
scrape (docs/metrics.md).

Counters of jobs are counts of the store's rows, not of events this process
saw: they are the same on every API server of a store, include what other
workers did, and survive restarts. Deleting finished jobs (retention,
``jobdock prune``) does not lower them: the store keeps a tally of what
deleted jobs counted (``store/tally.py``) and adds it.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from jobdock.models import JobState, WorkerRecord
from jobdock.models.records import BUCKETS, Histogram, StoreMetrics

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str) -> str:
    """The Prometheus label that carries a job label's value: ``label_``
    and the key, with characters Prometheus does not allow as ``_``."""
    return "label_" + _INVALID.sub("_", key)


class Snapshot:
    """A collector (``collect()``) of what the store said at one scrape."""

    def __init__(
        self,
        store: StoreMetrics,
        workers: Sequence[WorkerRecord],
        label_keys: Sequence[str],
        now: float | None = None,
        namespace: str = "default",
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.workers = workers
        self.labels = [label_name(key) for key in label_keys]
        self.now = time.time() if now is None else now

    def collect(self) -> Iterator[Metric]:
        yield from self._jobs()
        yield from self._attempts()
        yield _histogram(
            "jobdock_job_queue_wait_seconds",
            "Time from submission to the first start, of jobs that started.",
            self.store.queue_wait,
        )
        yield _histogram(
            "jobdock_job_run_duration_seconds",
            "Time from start to end of each finished attempt.",
            self.store.run_duration,
        )
        yield from self._workers()
        yield self._dispatcher()

    def _dispatcher(self) -> Metric:
        """docker-job-dispatcher's counter, ``jobs_total{namespace, action,
        status}``: jobs created, attempts started, and finished attempts
        (``die``) by exit status, so that its dashboards read jobdock's."""
        family = CounterMetricFamily(
            "jobs",
            "Jobs (docker-job-dispatcher's metric): created, started (attempts) and "
            "died (finished attempts, by exit status).",
            labels=["namespace", "action", "status"],
        )
        created = sum(count.jobs for count in (*self.store.jobs, *self.store.deleted))
        family.add_metric([self.namespace, "create", ""], created)
        family.add_metric([self.namespace, "start", ""], self.store.starts)
        for status, count in sorted(self.store.exits.items()):
            family.add_metric([self.namespace, "die", status], count)
        return family

    def _jobs(self) -> Iterator[Metric]:
        labels = self.labels
        stored = GaugeMetricFamily(
            "jobdock_jobs",
            "Jobs in the store, by state (queued and running ones are waiting and at work).",
            labels=["state", "runtime", *labels],
        )
        submitted = CounterMetricFamily(
            "jobdock_jobs_submitted", "Jobs submitted.", labels=["runtime", *labels]
        )
        started = CounterMetricFamily(
            "jobdock_jobs_started", "Jobs that started at least once.", labels=["runtime", *labels]
        )
        finished = CounterMetricFamily(
            "jobdock_jobs_finished",
            "Jobs finished, by final state and the reason of their last attempt.",
            labels=["state", "reason", "runtime", *labels],
        )
        by_state: dict[tuple[str, ...], int] = defaultdict(int)
        for count in self.store.jobs:
            by_state[(count.state, count.runtime, *count.labels)] += count.jobs
        by_runtime: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
        by_end: dict[tuple[str, ...], int] = defaultdict(int)
        # Deleted jobs count in the counters, not in the gauge.
        for count in (*self.store.jobs, *self.store.deleted):
            rest = (count.runtime, *count.labels)
            by_runtime[rest][0] += count.jobs
            by_runtime[rest][1] += count.started
            if JobState(count.state).terminal:
                by_end[(count.state, count.reason or "", *rest)] += count.jobs
        for key, value in sorted(by_state.items()):
            stored.add_metric(list(key), value)
        for key, value in sorted(by_end.items()):
            finished.add_metric(list(key), value)
        for key, (jobs, starts) in sorted(by_runtime.items()):
            submitted.add_metric(list(key), jobs)
            started.add_metric(list(key), starts)
        return iter([stored, submitted, started, finished])

    def _attempts(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "jobdock_attempts", "Finished attempts, by how they ended.", labels=["reason"]
        )
        for reason, count in sorted(self.store.attempts.items()):
            attempts.add_metric([reason], count)
        retries = CounterMetricFamily(
            "jobdock_job_retries",
            "Attempts after a job's first (retries, and reruns after a lost worker).",
        )
        retries.add_metric([], self.store.retries)
        return iter([attempts, retries])

    def _workers(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "jobdock_workers",
            "Workers alive, and those stopped or lost in the last 10 minutes.",
            labels=["state"],
        )
        counts = {"alive": 0, "lost": 0, "stopped": 0}
        age = GaugeMetricFamily(
            "jobdock_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat (workers not stopped).",
            labels=["worker", "host"],
        )
        running = GaugeMetricFamily(
            "jobdock_worker_running_jobs", "Jobs each worker runs.", labels=["worker", "host"]
        )
        for worker in self.workers:
            counts[worker.state] += 1
            if worker.state != "stopped":
                beat = max(self.now - worker.heartbeat_at.timestamp(), 0.0)
                age.add_metric([worker.id, worker.host], beat)
                running.add_metric([worker.id, worker.host], len(worker.running))
        for state, count in counts.items():
            states.add_metric([state], count)
        return iter([states, age, running])


def _histogram(name: str, documentation: str, histogram: Histogram) -> Metric:
    family = HistogramMetricFamily(name, documentation)
    buckets: list[tuple[str, float]] = [
        (_bound(bound), count) for bound, count in zip(BUCKETS, histogram.buckets, strict=True)
    ]
    buckets.append(("+Inf", histogram.count))
    family.add_metric([], buckets, histogram.sum)
    return family


def _bound(bound: float) -> str:
    return repr(float(bound))


class Collectors:
    """Several collectors as one (what ``generate_latest`` reads)."""

    def __init__(self, *collectors: object) -> None:
        self._collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()  # type: ignore[attr-defined]
