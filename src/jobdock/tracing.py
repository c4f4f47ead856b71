"""OpenTelemetry traces of a job's life: ``submit`` in the API server, then
``claim``, ``run`` and ``finish`` in whichever worker takes it, all in one
trace (docs/operating.md).

Off unless configured (``Settings.tracing_enabled``: the ``tracing`` setting,
or the standard OTEL_* environment naming an OTLP endpoint); the OTLP/HTTP
exporter then reads the rest of OTEL_* itself (endpoint, headers, service
name, resource attributes). The submit span's context is stored with the
job (``NewJob.traceparent``), so a worker in another process continues the
trace, and the run span's is the job's ``TRACEPARENT``. Off, a job still
gets a ``TRACEPARENT`` in its request's trace (``correlation.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from jobdock.correlation import current_trace, traceparent_of
from jobdock.settings import Settings
from jobdock.version import __version__

if TYPE_CHECKING:
    # The SDK is imported only where traces are on: it costs a CLI command
    # that never traces a tenth of a second.
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span as Span
    from opentelemetry.trace import Tracer

_log = logging.getLogger(__name__)
_provider: TracerProvider | None = None


def start(settings: Settings) -> bool:
    """Begin exporting spans if the settings say so; returns whether it did.
    Once per process (the server's or the worker's command calls it)."""
    global _provider
    if _provider is not None or not settings.tracing_enabled:
        return _provider is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _TraceIdOfRequest(RandomIdGenerator):
        """Trace ids as the request's B3 id says (correlation.py): a new
        trace begun while serving a request gets the id its caller was
        answered with."""

        def generate_trace_id(self) -> int:
            ids = current_trace()
            if ids is not None:
                return int(ids.trace_id, 16)
            return super().generate_trace_id()

    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # Unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names it.
        resource = resource.merge(Resource({"service.name": "jobdock"}))
    provider = TracerProvider(resource=resource, id_generator=_TraceIdOfRequest())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    _log.info("exporting traces over OTLP")
    return True


def stop() -> None:
    """Send the spans not yet exported, and stop exporting."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def enabled() -> bool:
    """Whether spans are exported in this process."""
    return _provider is not None


def _tracer() -> Tracer:
    assert _provider is not None
    return _provider.get_tracer("jobdock", __version__)


def _context_of(traceparent: str | None) -> Context | None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if traceparent is None:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def _traceparent_of(span: Span) -> str | None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


@contextmanager
def request_span(name: str, traceparent: str | None, **attributes: Any) -> Iterator[None]:
    """A server span for one request, continuing the caller's ``traceparent``
    if it sent one (else a new trace with the request's B3 id); nothing
    when traces are off."""
    if _provider is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    with _tracer().start_as_current_span(
        name, context=_context_of(traceparent), kind=SpanKind.SERVER, attributes=attributes
    ):
        yield


def job_traceparent() -> tuple[str | None, str | None]:
    """(B3 id, traceparent) a job created now stores: the request's, with the
    current span's context when one is recorded (the submit span)."""
    ids = current_trace()
    if ids is None:
        return None, None
    if _provider is not None:
        from opentelemetry import trace

        span = trace.get_current_span()
        if span.get_span_context().is_valid:
            return ids.b3, _traceparent_of(span)
    return ids.b3, ids.traceparent or traceparent_of(ids.b3)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span | None]:
    """A span inside the current one (nothing when traces are off)."""
    if _provider is None:
        yield None
        return
    with _tracer().start_as_current_span(name, attributes=attributes) as current:
        yield current


@contextmanager
def job_span(
    name: str, traceparent: str | None, **attributes: Any
) -> Iterator[tuple[Span | None, str | None]]:
    """A span in a job's stored trace (a worker's ``claim`` or ``run``),
    with the traceparent that continues it; without traces, the stored one."""
    if _provider is None or traceparent is None:
        yield None, traceparent
        return
    from opentelemetry.trace import SpanKind

    with _tracer().start_as_current_span(
        name, context=_context_of(traceparent), kind=SpanKind.CONSUMER, attributes=attributes
    ) as current:
        yield current, _traceparent_of(current)


def record(name: str, traceparent: str | None, began: float, **attributes: Any) -> None:
    """A span in a job's stored trace that began at ``began`` (epoch
    seconds) and ends now: a worker's claim, made for many jobs at once."""
    if _provider is None or traceparent is None:
        return
    from opentelemetry.trace import SpanKind

    started = _tracer().start_span(
        name,
        context=_context_of(traceparent),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        start_time=int(began * 1e9),
    )
    started.end()


def failed(current: Span | None, message: str) -> None:
    """Mark a span as ended in error."""
    if current is not None:
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR, message))
