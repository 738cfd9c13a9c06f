"""The chat service's error taxonomy: a stable wire code and a gRPC status per kind of error."""

from __future__ import annotations

import grpc

from realchat.contract.error_codes import ErrorCode


class ChatError(Exception):
    """An error the caller caused and can act on; the message is safe to show them."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    retriable = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidArgument(ChatError):  # noqa: N818 - named after the gRPC status it maps to
    status = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(ChatError):  # noqa: N818
    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ChatError):  # noqa: N818
    status = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ChatError):  # noqa: N818
    status = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ChatError):  # noqa: N818
    """The request is valid but the state does not allow it (editing a deleted message)."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class IdempotencyConflict(ChatError):  # noqa: N818
    """The client_msg_id was already used by this sender for other content or elsewhere."""

    status = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.IDEMPOTENCY_CONFLICT, message)


class RateLimited(ChatError):  # noqa: N818
    """The user sent more than their per-second budget (counted across every path)."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self) -> None:
        super().__init__(ErrorCode.RATE_LIMITED, "too many messages; slow down")
