"""OpenTelemetry tracing: one trace follows a message from the client's send to every
recipient's socket, across processes, through gRPC metadata, the outbox row and Kafka headers.

Each process configures its exporter once (`configure_tracing`); code only asks for `tracer()`
and moves context with `inject`/`extract` (W3C traceparent). Without a configured exporter the
global provider is the no-op one and spans cost next to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from realchat.config import TracingSettings

TRACER_NAME = "realchat"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def configure_tracing(settings: TracingSettings, service: str) -> TracerProvider | None:
    """Install the process's tracer provider with the configured exporter (none: no-op)."""
    if settings.exporter == "none":
        return None
    exporter: SpanExporter
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def inject(context: Context | None = None) -> dict[str, str]:
    """The W3C trace headers (traceparent, tracestate) of `context` (default: the current)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def extract(carrier: Mapping[str, str]) -> Context:
    return propagate.extract(dict(carrier))


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, for log lines; None outside a trace."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
