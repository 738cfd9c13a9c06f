"""`/v1/devices` and `/v1/notification-settings`: push tokens and notification settings, served
by the auth service (they belong to the account: logging out revokes the tokens) and forwarded
to it by the gateways like the other account routes.

Errors are the auth service's (`{"error": {"code", "message"}}`); every route needs a token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from realchat.auth.errors import AuthError, BadRequest, InvalidInput, NotFound
from realchat.auth.tokens import TokenClaims
from realchat.contract import push
from realchat.notifier.preferences import Device, PreferencesStore, TooManyDevices

M = TypeVar("M", bound=BaseModel)


class DeviceLimitReached(AuthError):  # noqa: N818
    status = 409

    def __init__(self, limit: int) -> None:
        super().__init__("too_many_devices", f"at most {limit} devices; remove one first")


def _device_out(device: Device) -> dict[str, Any]:
    return push.DeviceOut(
        device_id=str(device.device_id),
        platform=device.platform,  # type: ignore[arg-type]  # the table's CHECK holds it
        token=device.token,
        created_at=device.created_at,
    ).model_dump(mode="json")


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        data: Any = json.loads(await request.read())
    except (ValueError, RecursionError):
        raise BadRequest("invalid_json", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("invalid_json", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "body"
        raise InvalidInput(f"invalid_{field}", f"{field}: {first['msg']}") from None


def _path_id(request: web.Request, name: str, missing: NotFound) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise missing from None


def _no_device() -> NotFound:
    return NotFound("device_not_found", "no such device")


def _no_conversation() -> NotFound:
    return NotFound("conversation_not_found", "no such conversation")


#: The request's verified, unrevoked token claims (the auth service's `AuthApi.authenticate`).
Authenticate = Callable[[web.Request], Awaitable[TokenClaims]]


class PushApi:
    def __init__(
        self, store: PreferencesStore, authenticate: Authenticate, max_devices: int
    ) -> None:
        self._store = store
        self._authenticate = authenticate
        self._max_devices = max_devices

    def routes(self) -> list[web.RouteDef]:
        muted = "/v1/notification-settings/muted-conversations/{conversation_id}"
        return [
            web.post("/v1/devices", self.register),
            web.get("/v1/devices", self.devices),
            web.delete("/v1/devices/{device_id}", self.unregister),
            web.get("/v1/notification-settings", self.settings),
            web.patch("/v1/notification-settings", self.update_settings),
            web.put(muted, self.mute),
            web.delete(muted, self.unmute),
        ]

    async def _user(self, request: web.Request) -> uuid.UUID:
        return (await self._authenticate(request)).user_id

    async def register(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        body = await _body(request, push.RegisterDevice)
        try:
            device, new = await self._store.register(user, body.platform, body.token)
        except TooManyDevices:
            raise DeviceLimitReached(self._max_devices) from None
        return web.json_response(_device_out(device), status=201 if new else 200)

    async def devices(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        found = await self._store.devices(user)
        return web.json_response({"devices": [_device_out(d) for d in found]})

    async def unregister(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        device_id = _path_id(request, "device_id", _no_device())
        if not await self._store.unregister(user, device_id):
            raise _no_device()
        return web.Response(status=204)

    async def settings(self, request: web.Request) -> web.Response:
        return await self._settings_of(await self._user(request))

    async def update_settings(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        body = await _body(request, push.UpdateNotificationSettings)
        if body.do_not_disturb is not None:
            await self._store.set_do_not_disturb(user, body.do_not_disturb)
        return await self._settings_of(user)

    async def mute(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = _path_id(request, "conversation_id", _no_conversation())
        if not await self._store.is_member(user, conversation_id):
            raise _no_conversation()
        await self._store.set_muted(user, conversation_id, True)
        return web.Response(status=204)

    async def unmute(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        conversation_id = _path_id(request, "conversation_id", _no_conversation())
        await self._store.set_muted(user, conversation_id, False)
        return web.Response(status=204)

    async def _settings_of(self, user: uuid.UUID) -> web.Response:
        current = await self._store.settings(user)
        out = push.NotificationSettingsOut(
            do_not_disturb=current.do_not_disturb,
            muted_conversation_ids=[str(c) for c in current.muted_conversation_ids],
        )
        return web.json_response(out.model_dump(mode="json"))
