"""The SDK's exceptions.

Everything the SDK raises on purpose is a `RealChatError`. Refusals the server reports with a
contract error code are `ServerError`s and carry that `code`:

- `ApiError`: a REST call failed (`status`, `code`, `message`).
- `SendError` and its subclasses: an `error` frame answered one of this client's `send`s
  (`IdempotencyConflict`, `RateLimited`, `NotAMember`, `InvalidContent`,
  `ConversationNotFound`; any other code is a plain `SendError`).
- `Unauthorized`: the token was refused (REST 401, or WebSocket close 4001) and renewing it
  (when the client has a token provider) did not help. On the WebSocket this is final: the
  client stops.

`SendTimeout` says only that no reply came in time: the message may or may not have been
stored. Sending again with the same `client_msg_id` (and content) is safe and tells which.
"""

from __future__ import annotations

from realchat.contract.error_codes import ErrorCode


class RealChatError(Exception):
    """Base of every error the SDK raises on purpose."""


class ServerError(RealChatError):
    """The server refused something, with a stable contract error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ApiError(ServerError):
    """A REST call failed: HTTP `status` and the body's `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.code}: {self.message}"


class Unauthorized(ServerError):  # noqa: N818 - named for what happened
    """The access token was refused: REST 401 (`status` 401) or WebSocket close 4001
    (`status` None), and a renewed one (if the client can renew) was refused too, or the
    provider's login was. The WebSocket side stops: log in again and make a new client."""

    def __init__(
        self, message: str, status: int | None = None, code: str = ErrorCode.UNAUTHORIZED
    ) -> None:
        super().__init__(code, message)
        self.status = status


class SendError(ServerError):
    """An `error` frame answered a `send` of this client (matched by `client_msg_id`)."""

    def __init__(self, code: str, message: str, client_msg_id: str) -> None:
        super().__init__(code, message)
        self.client_msg_id = client_msg_id


class IdempotencyConflict(SendError):  # noqa: N818 - named for what happened
    """The `client_msg_id` was already used for other content or another conversation."""


class RateLimited(SendError):  # noqa: N818 - named for what happened
    """Too many sends: the server kept refusing this send for `rate_limited_retry_s` (the SDK
    writes a rate-limited send again by itself until then). The last frame was refused before
    anything was stored; an earlier attempt (on a connection that dropped before its reply) may
    have been stored: sending again later with the same `client_msg_id` tells."""


class NotAMember(SendError):  # noqa: N818 - named for what happened
    """The sender is not a member of the conversation."""


class InvalidContent(SendError):  # noqa: N818 - named for what happened
    """The content breaks the rules (1 to `limits.MAX_CONTENT_CHARS` characters, no NUL)."""


class ConversationNotFound(SendError):  # noqa: N818 - named for what happened
    """No such conversation."""


_SEND_ERRORS: dict[str, type[SendError]] = {
    ErrorCode.IDEMPOTENCY_CONFLICT: IdempotencyConflict,
    ErrorCode.RATE_LIMITED: RateLimited,
    ErrorCode.NOT_A_MEMBER: NotAMember,
    ErrorCode.INVALID_CONTENT: InvalidContent,
    ErrorCode.CONVERSATION_NOT_FOUND: ConversationNotFound,
}


def send_error(code: str, message: str, client_msg_id: str) -> SendError:
    """The typed exception for an `error` frame that answers a send."""
    return _SEND_ERRORS.get(code, SendError)(code, message, client_msg_id)


class SendTimeout(RealChatError, TimeoutError):  # noqa: N818 - named for what happened
    """No `send_ok` or error within the timeout. The outcome is unknown: the message may have
    been stored. `send(..., client_msg_id=error.client_msg_id)` again is safe (idempotent)."""

    def __init__(self, client_msg_id: str, timeout_s: float) -> None:
        super().__init__(f"no reply to send {client_msg_id} within {timeout_s} s")
        self.client_msg_id = client_msg_id


class ClientClosed(RealChatError):  # noqa: N818 - named for what happened
    """The client was closed (by the application) before the operation could complete."""
