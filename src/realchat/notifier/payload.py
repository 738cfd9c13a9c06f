"""The webhook's JSON body: the contract a push gateway (an APNs/FCM bridge) is written against,
documented in docs/notifications.md. Versioned: fields are only ever added."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

Platform = Literal["apns", "fcm", "webpush"]
PLATFORMS: tuple[Platform, ...] = ("apns", "fcm", "webpush")


class PushDevice(msgspec.Struct, frozen=True, kw_only=True):
    device_id: uuid.UUID
    platform: Platform
    token: str


class PushNotification(msgspec.Struct, frozen=True, kw_only=True):
    """One notification for one user about one conversation (several messages collapsed).

    No message text: conversations have no setting that allows a preview yet."""

    version: Literal[1] = 1
    #: The same on every attempt at this notification: deliver it once per key.
    idempotency_key: uuid.UUID
    user_id: uuid.UUID
    devices: list[PushDevice]
    conversation_id: uuid.UUID
    #: The sender of the latest message covered.
    sender_id: uuid.UUID
    message_count: int
    first_seq: int
    last_seq: int
    #: 1 on the first attempt; a push gateway may log it, it must not change what it does.
    attempt: int
    created_at: datetime


_encoder = msgspec.json.Encoder()


def encode(notification: PushNotification) -> bytes:
    return _encoder.encode(notification)
