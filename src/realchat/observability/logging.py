"""Structured logs: one JSON object per line with the service name, for machines; or a console
renderer for people at a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from realchat.config import LoggingSettings
from realchat.observability.tracing import current_trace_ids


def add_trace_ids(
    _: structlog.typing.WrappedLogger, __: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Every line written inside a span carries its trace_id (and span_id): a log line leads
    to its trace and back."""
    ids = current_trace_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


def _service_name(service: str) -> structlog.typing.Processor:
    def add(
        _: structlog.typing.WrappedLogger, __: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event.setdefault("service_name", service)
        return event

    return add


def configure_logging(settings: LoggingSettings, service: str) -> None:
    level = logging.getLevelNamesMapping().get(settings.level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer()
        if settings.format == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _service_name(service),
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.EventRenamer("message"),
            structlog.processors.dict_tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
