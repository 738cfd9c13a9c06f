"""The contract's error codes: the stable snake_case `code` of every REST error body and every
`error` frame. Each is defined here once; servers raise these members, the SDK matches them.
A `StrEnum`: a member is its string, on the wire and in comparisons."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # -- the request itself ------------------------------------------------------------------
    INVALID_JSON = "invalid_json"  # not JSON, or not a JSON object
    INVALID_REQUEST = "invalid_request"  # JSON of the wrong shape (the auth service)
    NOT_FOUND = "not_found"  # no such route
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TOO_LARGE = "request_too_large"
    HTTP_ERROR = "http_error"  # any other error the HTTP server itself raised
    INTERNAL = "internal"
    WEBSOCKET_UPGRADE_REQUIRED = "websocket_upgrade_required"

    # -- a field that breaks a rule: `invalid_<field>` (see `invalid`) ------------------------
    INVALID_USERNAME = "invalid_username"
    INVALID_PASSWORD = "invalid_password"
    INVALID_CURRENT_PASSWORD = "invalid_current_password"
    INVALID_NEW_PASSWORD = "invalid_new_password"
    INVALID_MEMBER_IDS = "invalid_member_ids"
    INVALID_USER_IDS = "invalid_user_ids"
    INVALID_USER_ID = "invalid_user_id"
    INVALID_SENDER_ID = "invalid_sender_id"
    INVALID_TITLE = "invalid_title"
    INVALID_CONVERSATION_ID = "invalid_conversation_id"
    INVALID_CLIENT_MSG_ID = "invalid_client_msg_id"
    INVALID_CLIENT_CHANGE_ID = "invalid_client_change_id"
    INVALID_CONTENT = "invalid_content"
    INVALID_SEQ = "invalid_seq"
    INVALID_AFTER_SEQ = "invalid_after_seq"
    INVALID_AFTER_CHANGE = "invalid_after_change"
    INVALID_UP_TO_SEQ = "invalid_up_to_seq"
    INVALID_LIMIT = "invalid_limit"
    INVALID_CURSOR = "invalid_cursor"
    INVALID_PAGE_SIZE = "invalid_page_size"
    INVALID_PAGE_TOKEN = "invalid_page_token"
    INVALID_PLATFORM = "invalid_platform"
    INVALID_TOKEN = "invalid_token"
    INVALID_DO_NOT_DISTURB = "invalid_do_not_disturb"
    INVALID_DEVICE = "invalid_device"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_TYPE = "missing_type"

    # -- who may do what -----------------------------------------------------------------------
    UNAUTHORIZED = "unauthorized"
    INVALID_CREDENTIALS = "invalid_credentials"
    MISSING_CREDENTIALS = "missing_credentials"
    MISSING_ACTING_USER = "missing_acting_user"
    INTERNAL_ONLY = "internal_only"
    NOT_A_MEMBER = "not_a_member"
    NOT_THE_CREATOR = "not_the_creator"
    NOT_THE_SENDER = "not_the_sender"
    BLOCKED = "blocked"

    # -- what does not exist -------------------------------------------------------------------
    USER_NOT_FOUND = "user_not_found"
    CONVERSATION_NOT_FOUND = "conversation_not_found"
    MEMBER_NOT_FOUND = "member_not_found"
    MESSAGE_NOT_FOUND = "message_not_found"
    DEVICE_NOT_FOUND = "device_not_found"
    UNKNOWN_USERS = "unknown_users"

    # -- state and conflicts -------------------------------------------------------------------
    USERNAME_TAKEN = "username_taken"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    MESSAGE_DELETED = "message_deleted"
    TOO_MANY_MEMBERS = "too_many_members"
    TOO_MANY_DEVICES = "too_many_devices"
    TOO_MANY_SENDS = "too_many_sends"

    # -- load and limits -----------------------------------------------------------------------
    RATE_LIMITED = "rate_limited"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    TOO_MANY_SIGNUPS = "too_many_signups"
    TOO_MANY_CONNECTIONS = "too_many_connections"

    # -- a dependency is down ------------------------------------------------------------------
    CHAT_UNAVAILABLE = "chat_unavailable"
    AUTH_UNAVAILABLE = "auth_unavailable"
    AUTH_BUSY = "auth_busy"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    TYPING_UNAVAILABLE = "typing_unavailable"
    SYNC_FAILED = "sync_failed"


def invalid(field: str) -> ErrorCode:
    """The code naming a field that breaks a rule (`content` -> `invalid_content`); a field the
    contract has no code for is `invalid_request`."""
    try:
        return ErrorCode(f"invalid_{field}")
    except ValueError:
        return ErrorCode.INVALID_REQUEST
