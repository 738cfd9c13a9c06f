"""`span()` without a tracer provider: nothing is opened on the per-message paths, and a trace
that came from elsewhere still travels on."""

from __future__ import annotations

import json
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from realchat.chat.service import _new_message
from realchat.observability import tracing
from realchat.observability.tracing import extract, inject, recording, span
from realchat.outbox.writer import trace_context_json

UPSTREAM = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
SENDER = uuid.UUID("7b1e8ee5-50bb-4f0d-9b6e-6f0f8a2b7e11")
CONVERSATION = "c0000000-0000-4000-8000-000000000001"


def trace_id(carrier: dict[str, str]) -> str:
    return carrier["traceparent"].split("-")[1]


@pytest.fixture(autouse=True)
def no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a process without an exporter, whatever an earlier test in this one installed
    (OpenTelemetry keeps a process's first provider for good)."""
    monkeypatch.setattr(tracing._installed, "provider", None)


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
    assert trace_id(carried) == trace_id(UPSTREAM)


def test_an_outbox_row_stores_the_trace_context_it_is_given() -> None:
    assert trace_context_json({}) == "{}"
    assert json.loads(trace_context_json(UPSTREAM)) == UPSTREAM


def test_a_batched_send_carries_its_own_trace_or_the_callers() -> None:
    """A send of a batch call keeps its own trace context, even an empty one (the call is
    nobody's trace); a send without one takes the caller's."""
    with span("ChatService/SendMessage", kind=SpanKind.SERVER, context=extract(UPSTREAM)):
        untraced = _new_message(SENDER, CONVERSATION, "k", "hi", {})
        traced = _new_message(SENDER, CONVERSATION, "k", "hi", None)
    assert untraced.trace_context == {}
    assert trace_id(traced.trace_context) == trace_id(UPSTREAM)
