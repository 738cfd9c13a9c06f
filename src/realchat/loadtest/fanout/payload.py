"""The published payload: it carries its own publish time, so latency is measured where the
message arrives, with no clock shared between publisher and receivers but the kernel's.

CLOCK_MONOTONIC (`time.monotonic_ns`) is system-wide on Linux: the publisher and every client
worker process on the machine read the same clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

#: Size of every published payload, in characters (ASCII: also bytes).
PAYLOAD_BYTES = 100
_SEPARATOR = "|"


class PayloadError(ValueError):
    """A payload this benchmark did not publish (or one cut short)."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a receiver learns from one payload."""

    #: Which measurement the message belongs to: a phase counts only its own messages.
    tag: str
    seq: int
    published_ns: int


def encode(tag: str, seq: int, published_ns: int, size: int = PAYLOAD_BYTES) -> str:
    """`tag|seq|ns|` padded with `x` to exactly `size` characters."""
    if _SEPARATOR in tag:
        raise PayloadError(f"a tag may not contain {_SEPARATOR!r}: {tag!r}")
    head = f"{tag}{_SEPARATOR}{seq}{_SEPARATOR}{published_ns}{_SEPARATOR}"
    if len(head) > size:
        raise PayloadError(f"payload head {head!r} is longer than {size} characters")
    return head.ljust(size, "x")


def stamp_now(tag: str, seq: int) -> str:
    return encode(tag, seq, time.monotonic_ns())


def decode(text: str) -> Stamp:
    parts = text.split(_SEPARATOR, 3)
    if len(parts) != 4:
        raise PayloadError(f"not a bench payload: {text[:40]!r}")
    try:
        return Stamp(parts[0], int(parts[1]), int(parts[2]))
    except ValueError as exc:
        raise PayloadError(f"not a bench payload: {text[:40]!r}") from exc
