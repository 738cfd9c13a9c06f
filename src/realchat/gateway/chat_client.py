"""The gateway's client of the chat service: gRPC calls on behalf of an authenticated user.

The gateway verified the user's token itself; it calls the chat service with the internal
credential naming that user, so a long-lived WebSocket keeps working after its token expires.

Sends are gathered: the concurrent sends of all the gateway's clients go out together in
SendMessageBatch calls (the chat service's group-commit batcher, `chat/group_commit.py`, with a
call as its "write"). An idle gateway's send goes at once, in a call of its own; sends that arrive
while calls are in flight share the next call (`SEND_BATCHING`), so under load gRPC's per-call
cost (0.2-0.5 ms of CPU on each side) is paid once per batch instead of once per message.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.trace import SpanKind

from realchat.chat.group_commit import GroupCommitLimits, GroupCommitter
from realchat.chat.rpc import (
    ERROR_CODE_KEY,
    MAX_BATCH_SENDS,
    SERVICE_NAME,
    internal_metadata,
    internal_only_metadata,
)
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from realchat.contract.error_codes import ErrorCode
from realchat.contract.frames import Message
from realchat.contract.limits import MAX_CONVERSATIONS_PAGE
from realchat.contract.rest import Conversation, UserPresence
from realchat.observability.tracing import inject, span

T = TypeVar("T")

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
}


class ChatCallError(Exception):
    """The chat service refused a call (`code`: its stable error code; `http_status`: the
    status the contract gives that refusal), or could not be reached or failed on its side
    (`chat_unavailable`, 503). Nothing of gRPC shows: callers speak the contract."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message

    @property
    def is_client_error(self) -> bool:
        """The caller's doing (retrying the same call cannot help), not the service's."""
        return self.http_status < 500


def _refused(status: grpc.StatusCode | None, code: str | None, message: str) -> ChatCallError:
    """A refusal the caller can act on, or `chat_unavailable` (whatever failed on the
    service's side is not shown)."""
    http_status = _HTTP_STATUS.get(status) if status is not None else None
    if code is None or http_status is None:
        return ChatCallError(503, ErrorCode.CHAT_UNAVAILABLE, "the chat service is unavailable")
    return ChatCallError(http_status, code, message)


def _error(exc: grpc.aio.AioRpcError) -> ChatCallError:
    code = next((str(v) for k, v in (exc.trailing_metadata() or ()) if k == ERROR_CODE_KEY), None)
    return _refused(exc.code(), code, exc.details() or code or "")


def message_from_proto(m: pb.Message) -> Message:
    return Message(
        message_id=m.message_id,
        conversation_id=m.conversation_id,
        seq=m.seq,
        sender_id=m.sender_id,
        content=m.content,
        created_at=_timestamp(m.created_at),
        version=m.version or 1,
        edited_at=_timestamp(m.edited_at) if m.HasField("edited_at") else None,
        deleted=m.deleted,
    )


def _timestamp(t: Timestamp) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def conversation_from_proto(c: pb.Conversation) -> Conversation:
    return Conversation(
        conversation_id=c.conversation_id,
        title=c.title or None,
        member_ids=list(c.member_ids),
        created_at=_timestamp(c.created_at),
        last_seq=c.last_seq,
        acked_seq=c.acked_seq,
        unread_count=c.unread_count,
    )


def presence_from_proto(p: pb.UserPresence) -> UserPresence:
    return UserPresence(
        user_id=p.user_id,
        status="online" if p.status == "online" else "offline",
        since=_timestamp(p.since) if p.HasField("since") else None,
    )


@dataclass(frozen=True)
class Position:
    """Where a user stands in one of their conversations: what a sync starts from."""

    conversation_id: str
    #: Their read position (the highest seq any of their devices acknowledged).
    acked_seq: int
    #: The conversation's change counter (edits, deletes) as of the read.
    last_change: int
    #: The conversation's last seq as of the read.
    last_seq: int


@dataclass(frozen=True)
class Sent:
    message: Message
    created: bool


@dataclass(frozen=True)
class _Send:
    user: uuid.UUID
    conversation_id: str
    client_msg_id: str
    content: str
    trace_context: dict[str, str]


#: Gathering sends into calls of up to 32, three in flight at most. An idle client's send goes
#: at once; one that arrives while calls are in flight waits up to 1 ms for company (sends that
#: arrive together, such as a call's worth of callers answered at once, fill one call), then goes
#: in a call of its own if a slot is free, so a call stuck on a locked conversation holds no other
#: send up. Why 32 and not all that waits: calls then overlap in a pipeline, one being encoded
#: here while another is written by the chat service and a third by PostgreSQL, each process
#: on its own core, instead of the whole load moving from stage to stage in lock-step with the
#: others idle. bench-write, 64 callers, 1,000 conversations (docs/benchmarks.md): calls of 32
#: instead of ~62, the machine 72 % busy instead of 52 %, a fifth to a third more messages per
#: second in interleaved runs, at about as much CPU per message.
SEND_BATCHING = GroupCommitLimits(max_batch=32, linger_s=0.001, max_inflight=3)

#: A send's client span attributes: the same for every send, built once.
_SEND_SPAN_ATTRIBUTES = {"rpc.system": "grpc", "rpc.method": "SendMessage"}


def _batch_request(sends: Sequence[_Send]) -> pb.SendMessageBatchRequest:
    """The sends written in place in the request: nested constructors would copy each one
    (twice the cost)."""
    request = pb.SendMessageBatchRequest()
    add = request.sends.add
    for s in sends:
        batched = add(sender_id=str(s.user))
        send = batched.send
        send.conversation_id = s.conversation_id
        send.client_msg_id = s.client_msg_id
        send.content = s.content
        if s.trace_context:
            batched.trace_context.update(s.trace_context)
    return request


def _sent_or_error(result: pb.SendResult) -> Sent | ChatCallError:
    if result.HasField("sent"):
        return Sent(message_from_proto(result.sent.message), result.sent.created)
    error = result.error
    status = next((s for s in grpc.StatusCode if s.value[0] == error.status), None)
    return _refused(status, error.code, error.message)


def _changed(reply: pb.ChangeMessageResponse) -> Sent:
    return Sent(message_from_proto(reply.message), reply.created)


class ChatClient:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        internal_token: str,
        timeout_s: float = 10,
        send_batching: GroupCommitLimits = SEND_BATCHING,
    ) -> None:
        if send_batching.max_batch > MAX_BATCH_SENDS:
            raise ValueError(f"the chat service takes at most {MAX_BATCH_SENDS} sends per call")
        self._stub = chat_pb2_grpc.ChatServiceStub(channel)
        self._token = internal_token
        self._timeout = timeout_s
        self._sends: GroupCommitter[_Send, Sent | ChatCallError] = GroupCommitter(
            self._send_batch, send_batching
        )

    async def _call(self, rpc: Callable[..., Awaitable[T]], request: object, user: uuid.UUID) -> T:
        """One call in a client span whose context travels in the metadata (traceparent)."""
        method = type(request).__name__.removesuffix("Request")
        with span(
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
        """One send, carried with the other sends in flight (see the module's docstring)."""
        with span(
            f"{SERVICE_NAME}/SendMessage",
            kind=SpanKind.CLIENT,
            attributes=_SEND_SPAN_ATTRIBUTES,
        ):
            send = _Send(user, conversation_id, client_msg_id, content, inject())
            outcome = await self._sends.submit(send)
        if isinstance(outcome, ChatCallError):
            raise outcome
        return outcome

    async def _send_batch(self, sends: Sequence[_Send]) -> list[Sent | ChatCallError]:
        """One SendMessageBatch call; a failed call fails each of its sends."""
        request = _batch_request(sends)
        try:
            reply = await self._stub.SendMessageBatch(
                request, metadata=internal_only_metadata(self._token), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return [_sent_or_error(r) for r in reply.results]

    async def history(
        self, user: uuid.UUID, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[Message], int]:
        request = pb.GetHistoryRequest(
            conversation_id=conversation_id, after_seq=after_seq, limit=limit
        )
        reply = await self._call(self._stub.GetHistory, request, user)
        return [message_from_proto(m) for m in reply.messages], reply.last_seq

    async def changes(
        self, user: uuid.UUID, conversation_id: str, after_change: int, up_to_seq: int, limit: int
    ) -> tuple[list[Message], int]:
        request = pb.GetChangesRequest(
            conversation_id=conversation_id,
            after_change=after_change,
            up_to_seq=up_to_seq,
            limit=limit,
        )
        reply = await self._call(self._stub.GetChanges, request, user)
        return [message_from_proto(m) for m in reply.messages], reply.next_after_change

    async def ack(self, user: uuid.UUID, conversation_id: str, seq: int) -> int:
        request = pb.AckRequest(conversation_id=conversation_id, seq=seq)
        return (await self._call(self._stub.Ack, request, user)).acked_seq

    async def conversations_page(
        self, user: uuid.UUID, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Conversation], str]:
        """One page of the user's conversations and the next page's token ("" on the last)."""
        request = pb.ListConversationsRequest(page_size=page_size, page_token=page_token)
        reply = await self._call(self._stub.ListConversations, request, user)
        return [conversation_from_proto(c) for c in reply.conversations], reply.next_page_token

    async def positions(self, user: uuid.UUID) -> list[Position]:
        """Where the user stands in each of their conversations (ListPositions: no members, no
        unread counts), read page by page: each reply stays small however many there are."""
        found: list[Position] = []
        token = ""
        while True:
            request = pb.ListPositionsRequest(page_size=MAX_CONVERSATIONS_PAGE, page_token=token)
            reply = await self._call(self._stub.ListPositions, request, user)
            found.extend(
                Position(p.conversation_id, p.acked_seq, p.last_change, p.last_seq)
                for p in reply.positions
            )
            token = reply.next_page_token
            if not token:
                return found

    async def member_ids(self, user: uuid.UUID, conversation_id: str) -> list[str]:
        """The conversation's members, read as `user` (refused unless they are one)."""
        request = pb.GetConversationRequest(conversation_id=conversation_id)
        return list((await self._call(self._stub.GetConversation, request, user)).member_ids)

    async def edit(
        self, user: uuid.UUID, conversation_id: str, seq: int, client_change_id: str, content: str
    ) -> Sent:
        request = pb.EditMessageRequest(
            conversation_id=conversation_id,
            seq=seq,
            client_change_id=client_change_id,
            content=content,
        )
        return _changed(await self._call(self._stub.EditMessage, request, user))

    async def delete(self, user: uuid.UUID, conversation_id: str, seq: int) -> Sent:
        request = pb.DeleteMessageRequest(conversation_id=conversation_id, seq=seq)
        return _changed(await self._call(self._stub.DeleteMessage, request, user))

    async def rename(self, user: uuid.UUID, conversation_id: str, title: str) -> Conversation:
        request = pb.RenameConversationRequest(conversation_id=conversation_id, title=title)
        return conversation_from_proto(
            await self._call(self._stub.RenameConversation, request, user)
        )

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
    ) -> Conversation:
        request = pb.CreateConversationRequest(member_ids=member_ids, title=title)
        return conversation_from_proto(
            await self._call(self._stub.CreateConversation, request, user)
        )

    async def add_members(
        self, user: uuid.UUID, conversation_id: str, user_ids: list[str]
    ) -> Conversation:
        request = pb.AddMembersRequest(conversation_id=conversation_id, user_ids=user_ids)
        return conversation_from_proto(await self._call(self._stub.AddMembers, request, user))

    async def presence(self, user: uuid.UUID, user_ids: list[str]) -> list[UserPresence]:
        request = pb.GetPresenceRequest(user_ids=user_ids)
        reply = await self._call(self._stub.GetPresence, request, user)
        return [presence_from_proto(p) for p in reply.users]
