"""REST bodies of push notifications: devices and notification settings (docs/notifications.md).
Like contract/rest.py, they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RegisterDevice(BaseModel):
    """The body of `POST /v1/devices`: the push token the platform gave this app install."""

    model_config = ConfigDict(extra="ignore", strict=True)
    platform: Literal["apns", "fcm", "webpush"]
    token: str = Field(min_length=1, max_length=4096)


class DeviceOut(BaseModel):
    device_id: str
    platform: Literal["apns", "fcm", "webpush"]
    token: str
    created_at: datetime


class DevicesOut(BaseModel):
    devices: list[DeviceOut]


class UpdateNotificationSettings(BaseModel):
    """The body of `PATCH /v1/notification-settings`: fields left out keep their value."""

    model_config = ConfigDict(extra="ignore", strict=True)
    do_not_disturb: bool | None = None


class NotificationSettingsOut(BaseModel):
    do_not_disturb: bool
    muted_conversation_ids: list[str]
