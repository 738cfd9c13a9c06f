"""`span()` without a tracer provider (this test process installs none): nothing is opened on
the per-message paths, and a trace that came from elsewhere still travels on."""

from __future__ import annotations

import json

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from realchat.observability.tracing import extract, inject, recording, span
from realchat.outbox.writer import trace_context_json

UPSTREAM = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def test_no_provider_means_no_span_and_no_context_change() -> None:
    assert not recording()
    before = trace.get_current_span()
    with span("ws send", kind=SpanKind.SERVER, attributes={"realchat.user_id": "u"}) as opened:
        opened.set_attribute("realchat.error_code", "x")  # ignored, never raises
        assert not opened.is_recording()
        assert trace.get_current_span() is before
        assert inject() == {}


def test_a_trace_from_elsewhere_is_carried_on_without_a_provider() -> None:
    with span("ChatService/Ack", kind=SpanKind.SERVER, context=extract(UPSTREAM)):
        carried = inject()
    assert carried["traceparent"].split("-")[1] == UPSTREAM["traceparent"].split("-")[1]


def test_an_outbox_row_stores_the_trace_context_it_is_given() -> None:
    assert trace_context_json({}) == "{}"
    assert json.loads(trace_context_json(UPSTREAM)) == UPSTREAM
