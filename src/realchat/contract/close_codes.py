"""WebSocket close codes of the contract."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    GOING_AWAY = 1001  # server shutdown or drain: reconnect elsewhere
    POLICY = 1008  # flood
    TOO_BIG = 1009  # frame above the size limit
    UNAUTHORIZED = 4001  # bad, expired or missing token: do not retry with it
    IDLE_TIMEOUT = 4002  # nothing (no frame, no pong) received for the idle timeout: reconnect
    SLOW_CONSUMER = 4008  # send queue filled up: reconnect and sync
