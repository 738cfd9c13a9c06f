"""REST bodies of push notifications: devices and notification settings (docs/notifications.md).
Like contract/rest.py, the server, the SDK and the OpenAPI document share them."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from realchat.contract.frames import Time
from realchat.contract.limits import MAX_PUSH_TOKEN_CHARS

Platform = Literal["apns", "fcm", "webpush"]


class RegisterDevice(msgspec.Struct, frozen=True):
    """The body of `POST /v1/devices`: the push token the platform gave this app install."""

    platform: Platform
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PUSH_TOKEN_CHARS)]


class Device(msgspec.Struct, frozen=True):
    """A push token registered for the user."""

    device_id: str
    platform: Platform
    token: str
    created_at: Time


class Devices(msgspec.Struct, frozen=True):
    devices: list[Device]


class UpdateNotificationSettings(msgspec.Struct, frozen=True):
    """The body of `PATCH /v1/notification-settings`: fields left out keep their value."""

    do_not_disturb: bool | None = None


class NotificationSettings(msgspec.Struct, frozen=True):
    do_not_disturb: bool
    muted_conversation_ids: list[str]
