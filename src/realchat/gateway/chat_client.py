"""The gateway's client of the chat service: gRPC calls on behalf of an authenticated user.

The gateway verified the user's token itself; it calls the chat service with the internal
credential naming that user, so a long-lived WebSocket keeps working after its token expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TypeVar

import grpc
from opentelemetry.trace import SpanKind

from realchat.chat.api import ERROR_CODE_KEY, SERVICE_NAME
from realchat.chat.identity import internal_metadata
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from realchat.contract.frames import Message
from realchat.observability.tracing import inject, tracer

T = TypeVar("T")

#: Conversations per ListConversations page when the gateway reads them all (for a sync).
LIST_PAGE_SIZE = 200

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
}


class ChatCallError(Exception):
    """The chat service refused a call; `code` is its stable error code."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.status, 503)

    @property
    def is_client_error(self) -> bool:
        return self.status in _HTTP_STATUS


def _error(exc: grpc.aio.AioRpcError) -> ChatCallError:
    code = next((str(v) for k, v in (exc.trailing_metadata() or ()) if k == ERROR_CODE_KEY), None)
    if code is None or exc.code() not in _HTTP_STATUS:
        return ChatCallError(exc.code(), "chat_unavailable", "the chat service is unavailable")
    return ChatCallError(exc.code(), code, exc.details() or code)


def message_from_proto(m: pb.Message) -> Message:
    return Message(
        message_id=m.message_id,
        conversation_id=m.conversation_id,
        seq=m.seq,
        sender_id=m.sender_id,
        content=m.content,
        created_at=m.created_at.ToDatetime(tzinfo=UTC),
    )


@dataclass(frozen=True)
class Sent:
    message: Message
    created: bool


class ChatClient:
    def __init__(
        self, channel: grpc.aio.Channel, internal_token: str, timeout_s: float = 10
    ) -> None:
        self._stub = chat_pb2_grpc.ChatServiceStub(channel)
        self._token = internal_token
        self._timeout = timeout_s

    async def _call(self, rpc: Callable[..., Awaitable[T]], request: object, user: uuid.UUID) -> T:
        """One call in a client span whose context travels in the metadata (traceparent)."""
        method = type(request).__name__.removesuffix("Request")
        with tracer().start_as_current_span(
            f"{SERVICE_NAME}/{method}",
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.method": method},
        ):
            metadata = [*internal_metadata(self._token, user), *inject().items()]
            try:
                return await rpc(request, metadata=metadata, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                raise _error(exc) from None

    async def send(
        self, user: uuid.UUID, conversation_id: str, client_msg_id: str, content: str
    ) -> Sent:
        request = pb.SendMessageRequest(
            conversation_id=conversation_id, client_msg_id=client_msg_id, content=content
        )
        reply = await self._call(self._stub.SendMessage, request, user)
        return Sent(message_from_proto(reply.message), reply.created)

    async def history(
        self, user: uuid.UUID, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[Message], int]:
        request = pb.GetHistoryRequest(
            conversation_id=conversation_id, after_seq=after_seq, limit=limit
        )
        reply = await self._call(self._stub.GetHistory, request, user)
        return [message_from_proto(m) for m in reply.messages], reply.last_seq

    async def ack(self, user: uuid.UUID, conversation_id: str, seq: int) -> int:
        request = pb.AckRequest(conversation_id=conversation_id, seq=seq)
        return (await self._call(self._stub.Ack, request, user)).acked_seq

    async def conversations_page(
        self, user: uuid.UUID, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[pb.Conversation], str]:
        """One page of the user's conversations and the next page's token ("" on the last)."""
        request = pb.ListConversationsRequest(page_size=page_size, page_token=page_token)
        reply = await self._call(self._stub.ListConversations, request, user)
        return list(reply.conversations), reply.next_page_token

    async def conversations(self, user: uuid.UUID) -> list[pb.Conversation]:
        """All of them, page by page: each reply stays small however many there are."""
        found: list[pb.Conversation] = []
        token = ""
        while True:
            page, token = await self.conversations_page(user, LIST_PAGE_SIZE, token)
            found.extend(page)
            if not token:
                return found

    async def remove_member(self, user: uuid.UUID, conversation_id: str, member: str) -> None:
        request = pb.RemoveMemberRequest(conversation_id=conversation_id, user_id=member)
        await self._call(self._stub.RemoveMember, request, user)

    async def block(self, user: uuid.UUID, blocked: str) -> None:
        await self._call(self._stub.BlockUser, pb.BlockUserRequest(user_id=blocked), user)

    async def unblock(self, user: uuid.UUID, blocked: str) -> None:
        await self._call(self._stub.UnblockUser, pb.UnblockUserRequest(user_id=blocked), user)

    async def blocked(self, user: uuid.UUID) -> list[str]:
        request = pb.ListBlockedUsersRequest()
        return list((await self._call(self._stub.ListBlockedUsers, request, user)).user_ids)

    async def create_conversation(
        self, user: uuid.UUID, member_ids: list[str], title: str
    ) -> pb.Conversation:
        request = pb.CreateConversationRequest(member_ids=member_ids, title=title)
        return await self._call(self._stub.CreateConversation, request, user)

    async def add_members(
        self, user: uuid.UUID, conversation_id: str, user_ids: list[str]
    ) -> pb.Conversation:
        request = pb.AddMembersRequest(conversation_id=conversation_id, user_ids=user_ids)
        return await self._call(self._stub.AddMembers, request, user)

    async def presence(self, user: uuid.UUID, user_ids: list[str]) -> list[pb.UserPresence]:
        request = pb.GetPresenceRequest(user_ids=user_ids)
        return list((await self._call(self._stub.GetPresence, request, user)).users)
