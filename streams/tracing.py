"""OpenTelemetry tracing: one trace per turn, a span per stage and per phase, carried across
Kafka hops in the W3C ``traceparent`` record header.

Every pipeline agent handles a record inside a *stage span* whose parent is the span that
sent the record (its ``traceparent`` header), so the stages of one turn form one tree: the
session agent's admission (the trace's root, unless the producer sent a ``traceparent`` of
its own), the four retrieval stages and the join under it, then decide, generate, enforce
and the session agent's completion, each a child of the one before. Inside a stage each
phase the processors time (``processors.turn.timing.timed``: identification, sensor,
customer_data, retrieval.embedding, rule_selection, scenarios, tools, planning, generation,
enforcement) is a child span, as are ``retrieval.<type>`` and ``persistence``, which the
stages time themselves. A request that waited behind its session's turn in flight starts
a new trace when it is admitted (the gate keeps requests, not their headers), as does a turn
the stall watchdog drives again.

Spans are exported over OTLP/HTTP when ``TURNSTREAM_OTEL__ENDPOINT`` or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set. Otherwise
tracing is off: no tracer exists, every helper here returns after one ``None`` test, and no
header is added to any record. The provider is this module's, not the global one, so tests
can enable tracing with an in-memory exporter and turn it off again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from processors.turn.timing import watch_phases
from streams.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_CARRIED = (TRACEPARENT, TRACESTATE)
TRACER_NAME = "turnstream"
_PROPAGATOR = TraceContextTextMapPropagator()
_ENV_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_tracer: Tracer | None = None
_owned: TracerProvider | None = None


def enabled() -> bool:
    return _tracer is not None


def enable(provider: TracerProvider, *, owned: bool = False) -> None:
    """Trace with ``provider`` from now on; ``owned``: :func:`disable` shuts it down."""
    global _tracer, _owned
    _tracer = provider.get_tracer(TRACER_NAME)
    _owned = provider if owned else None
    watch_phases(phase_span)


def disable() -> None:
    """Stop tracing (and flush and shut down a provider :func:`configure` made)."""
    global _tracer, _owned
    watch_phases(None)
    _tracer = None
    owned, _owned = _owned, None
    if owned is not None:
        owned.shutdown()


def configure(settings: Settings) -> bool:
    """Export spans over OTLP/HTTP when an endpoint is configured; True if tracing is on."""
    endpoint = settings.otel.endpoint
    if not endpoint and not any(os.environ.get(name) for name in _ENV_ENDPOINTS):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # An explicit base URL gets the signal path the standard variable would get appended.
    exporter = (
        OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
        if endpoint
        else OTLPSpanExporter()
    )
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    enable(provider, owned=True)
    logger.info("tracing: spans exported over OTLP to %s", endpoint or "the OTEL_* endpoint")
    return True


def _carrier(headers: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in headers or ():
        if key in _CARRIED and value is not None:
            found[key] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return found


def stage_span(
    name: str, headers: Iterable[tuple[str, Any]] | None, **attributes: str | int
) -> AbstractContextManager[object]:
    """The span of one pipeline stage handling one record: a child of the span that sent
    the record, or a new trace when the record carries no ``traceparent``."""
    tracer = _tracer
    if tracer is None:
        return nullcontext()
    parent = _PROPAGATOR.extract(_carrier(headers), context=Context())
    return tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    )


def phase_span(name: str) -> AbstractContextManager[object]:
    """A child span of the current one (a phase inside a stage)."""
    tracer = _tracer
    if tracer is None:
        return nullcontext()
    return tracer.start_as_current_span(name)


def new_trace(name: str, **attributes: str | int) -> AbstractContextManager[object]:
    """A root span, whatever span is current: a turn admitted while another one finishes."""
    tracer = _tracer
    if tracer is None:
        return nullcontext()
    return tracer.start_as_current_span(name, context=Context(), attributes=attributes)


def headers() -> list[tuple[str, bytes]] | None:
    """Record headers that make the current span the parent of the stage that reads the
    record; None when tracing is off (or no span is current)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return [(key, value.encode("latin-1")) for key, value in carrier.items()] or None


def tag(**attributes: str | int) -> None:
    """Set attributes on the current span (e.g. the turn id once a stage knows it)."""
    if _tracer is None:
        return
    span = get_current_span()
    for key, value in attributes.items():
        span.set_attribute(key, value)


def failed(exc: BaseException) -> None:
    """Mark the current span as failed with ``exc``."""
    if _tracer is None:
        return
    span = get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))
