"""The client's knobs, with defaults for a real deployment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientOptions:
    #: First reconnect delay; doubles per failed attempt up to `reconnect_max_s` (each delay is
    #: jittered down by up to half); back to the first after a connection completes its sync.
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    #: aiohttp heartbeat: a WebSocket ping this often; no pong within half of it drops the
    #: connection (and a reconnect follows).
    heartbeat_s: float = 20.0
    #: TCP connect + WebSocket upgrade.
    connect_timeout_s: float = 10.0
    #: The handshake (sync up to `sync_done`) fails if the server sends nothing for this long.
    handshake_timeout_s: float = 30.0
    #: A gap (a message held back because a lower seq is missing) that lasts this long makes
    #: the client ask the server for the conversation again (`sync` from its position).
    gap_timeout_s: float = 2.0
    #: While the server says live delivery is paused (its bus is away), every conversation is
    #: synced from its position this often, so messages keep arriving (later than live).
    paused_sync_s: float = 2.0
    #: Messages held back per conversation at most; beyond it the highest are dropped and a
    #: sync brings them again.
    hold_back_cap: int = 1000
    #: Messages ready for `messages()` but not yet taken. When full, further messages are left
    #: out (not counted as had); once the application has read half of them, the client syncs
    #: those conversations again from their positions. Bounded memory, nothing lost.
    max_buffered_messages: int = 10_000
    #: Events kept for `events()`; when full, the oldest is dropped.
    max_buffered_events: int = 1000
    #: Acknowledge each message once `messages()` has handed it over, batched: at most one
    #: `ack` per conversation every `auto_ack_interval_s`.
    auto_ack: bool = False
    auto_ack_interval_s: float = 0.5
    #: Outgoing frames per second (the server cuts off clients above 50/s).
    max_frames_per_s: float = 40.0
    #: A send the server refuses with `rate_limited` (nothing stored by that frame) is written
    #: again, same `client_msg_id`, after a jittered backoff (0.1 s doubling up to 2 s), for up
    #: to this long after its first refusal; then `send()` raises `RateLimited`. 0: at once.
    rate_limited_retry_s: float = 30.0
    #: Default timeout of `send()`; None waits as long as it takes (across reconnects).
    send_timeout_s: float | None = None
    #: Timeout of each REST request.
    request_timeout_s: float = 30.0
