"""What the chat service's gRPC server (`api.py`) and its clients (the gateway's chat client,
operator tools) share: the service's name, the call metadata naming the caller, the trailer
carrying a refusal's stable error code, and the most sends one SendMessageBatch call may carry.

Only the generated protobuf module is imported: a client takes this without the server's
dependencies (asyncpg, the service's rules).
"""

from __future__ import annotations

import uuid

from realchat.chat.v1 import chat_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ChatService"].full_name

#: Trailing metadata of a refused call: the stable error code (`not_a_member`, ...).
ERROR_CODE_KEY = "realchat-error-code"

#: Most sends in one SendMessageBatch call.
MAX_BATCH_SENDS = 1000

AUTHORIZATION = "authorization"
#: Names the user a trusted caller acts for.
ACTING_USER = "x-realchat-user-id"


def internal_metadata(token: str, user_id: uuid.UUID) -> tuple[tuple[str, str], ...]:
    """The call metadata a trusted caller sends to act for `user_id`."""
    return ((AUTHORIZATION, f"Bearer {token}"), (ACTING_USER, str(user_id)))


def internal_only_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata of a trusted caller's call that names its users in the request
    (SendMessageBatch)."""
    return ((AUTHORIZATION, f"Bearer {token}"),)
