"""`/v1/devices` and `/v1/notification-settings`: push tokens and notification settings, served
by the auth service (they belong to the account: logging out revokes the tokens) and forwarded
to it by the gateways like the other account routes.

Errors are the auth service's (`{"error": {"code", "message"}}`); every route needs a token.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from realchat.auth.errors import AuthError, BadRequest, NotFound
from realchat.auth.tokens import TokenClaims
from realchat.contract import push
from realchat.contract.error_codes import ErrorCode
from realchat.http import contract_routes, decode_body, json_response
from realchat.notifier.preferences import Device, PreferencesStore, TooManyDevices

T = TypeVar("T")


class DeviceLimitReached(AuthError):  # noqa: N818
    status = 409

    def __init__(self, limit: int) -> None:
        super().__init__(ErrorCode.TOO_MANY_DEVICES, f"at most {limit} devices; remove one first")


def _device_out(device: Device) -> push.Device:
    return push.Device(
        device_id=str(device.device_id),
        platform=device.platform,  # type: ignore[arg-type]  # the table's CHECK holds it
        token=device.token,
        created_at=device.created_at,
    )


async def _body(request: web.Request, body: type[T]) -> T:
    not_an_object = BadRequest(ErrorCode.INVALID_JSON, "the body must be a JSON object")
    return decode_body(await request.read(), body, not_an_object)


def _path_id(request: web.Request, name: str, missing: NotFound) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise missing from None


def _no_device() -> NotFound:
    return NotFound(ErrorCode.DEVICE_NOT_FOUND, "no such device")


def _no_conversation() -> NotFound:
    return NotFound(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")


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
        return contract_routes(
            {
                "register_device": self.register,
                "devices": self.devices,
                "unregister_device": self.unregister,
                "notification_settings": self.settings,
                "update_notification_settings": self.update_settings,
                "mute": self.mute,
                "unmute": self.unmute,
            }
        )

    async def _user(self, request: web.Request) -> uuid.UUID:
        return (await self._authenticate(request)).user_id

    async def register(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        body = await _body(request, push.RegisterDevice)
        try:
            device, new = await self._store.register(user, body.platform, body.token)
        except TooManyDevices:
            raise DeviceLimitReached(self._max_devices) from None
        return json_response(_device_out(device), status=201 if new else 200)

    async def devices(self, request: web.Request) -> web.Response:
        user = await self._user(request)
        found = await self._store.devices(user)
        return json_response(push.Devices([_device_out(d) for d in found]))

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
        out = push.NotificationSettings(
            do_not_disturb=current.do_not_disturb,
            muted_conversation_ids=[str(c) for c in current.muted_conversation_ids],
        )
        return json_response(out)
