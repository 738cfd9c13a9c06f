"""The gRPC transport of the chat service: metadata -> caller, proto <-> records, errors ->
status codes. No rules here; they live in `service.py`."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import grpc
import structlog
from opentelemetry.trace import Span, SpanKind, set_span_in_context

from realchat.chat.errors import ChatError, InvalidArgument, PermissionDenied
from realchat.chat.identity import Authenticator, InternalCredential
from realchat.chat.metrics import GRPC_DURATION, GRPC_REQUESTS
from realchat.chat.protos import conversation_to_proto, fill_message, message_to_proto, timestamp
from realchat.chat.rpc import ERROR_CODE_KEY, MAX_BATCH_SENDS, SERVICE_NAME
from realchat.chat.send_limit import DirectSendLimit
from realchat.chat.service import ChatService, SendRequest, SendResult
from realchat.chat.v1 import chat_pb2 as pb
from realchat.chat.v1 import chat_pb2_grpc
from realchat.contract.error_codes import ErrorCode
from realchat.observability.tracing import extract, inject, recording, tracer

log = structlog.get_logger(__name__)


T = TypeVar("T")
Request = TypeVar("Request")
Context = grpc.aio.ServicerContext[Any, Any]

#: Sends of one SendMessages stream in progress at once; past it the stream is not read (the
#: caller's writes wait: gRPC flow control), so one stream's memory stays bounded.
STREAM_WINDOW = 256


async def _abort(context: Context, exc: ChatError) -> NoReturn:
    """End the call with the error's status and wire code (the only way a ChatError leaves)."""
    context.set_trailing_metadata(((ERROR_CODE_KEY, exc.code),))
    await context.abort(exc.status, exc.message)
    raise AssertionError("abort returns by raising") from exc


def send_error(exc: ChatError) -> pb.SendError:
    """A ChatError as a streamed send's result: what SendMessage would abort with."""
    return pb.SendError(status=exc.status.value[0], code=exc.code, message=exc.message)


#: A send that failed for a reason of ours (a bug, the database down): nothing internal leaks.
INTERNAL_SEND_ERROR = pb.SendError(
    status=grpc.StatusCode.INTERNAL.value[0], code=ErrorCode.INTERNAL, message="internal error"
)


def _sender(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(ErrorCode.INVALID_SENDER_ID, "sender_id must be a UUID") from None


def _send_requests(request: pb.SendMessageBatchRequest) -> list[SendRequest]:
    """The batch's sends; a bad sender_id fails the whole call (a bug of the trusted caller)."""
    if len(request.sends) > MAX_BATCH_SENDS:
        raise InvalidArgument(ErrorCode.TOO_MANY_SENDS, f"at most {MAX_BATCH_SENDS} sends per call")
    return [
        SendRequest(
            _sender(s.sender_id),
            s.send.conversation_id,
            s.send.client_msg_id,
            s.send.content,
            dict(s.trace_context),  # its own, even if empty: the call is nobody's trace
        )
        for s in request.sends
    ]


def _sent(result: SendResult) -> pb.SendMessageResponse:
    return pb.SendMessageResponse(message=message_to_proto(result.message), created=result.created)


def _batch_response(results: list[SendResult | ChatError]) -> pb.SendMessageBatchResponse:
    """Each send's result, built in place in the reply (see `fill_message`)."""
    response = pb.SendMessageBatchResponse()
    add = response.results.add
    for result in results:
        slot = add()
        if isinstance(result, ChatError):
            slot.error.CopyFrom(send_error(result))
        else:
            slot.sent.created = result.created
            fill_message(slot.sent.message, result.message)
    return response


def _send_span(request: SendRequest) -> Span:
    """A batched send's server span, continuing the trace of the request that made it: the
    same span a SendMessage call would have had."""
    return tracer().start_span(
        f"{SERVICE_NAME}/SendMessage",
        context=extract(request.trace_context or {}),
        kind=SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc",
            "rpc.method": "SendMessage",
            "realchat.user_id": str(request.caller),
        },
    )


def _rpc(
    handler: Callable[[ChatServicer, uuid.UUID, Request], Awaitable[T]],
) -> Callable[[ChatServicer, Request, Context], Coroutine[Any, Any, T]]:
    """A unary RPC written as its logic alone: `handler(servicer, caller, request)` runs inside
    `ChatServicer._call` (authentication, span, status codes, metrics) under its own name."""
    method = handler.__name__

    @functools.wraps(handler)
    async def rpc(self: ChatServicer, request: Request, context: Context) -> T:
        return await self._call(method, context, lambda caller: handler(self, caller, request))

    return rpc


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """`internal`: the credential SendMessageBatch requires (without it, the call is refused);
    `send_limit`: the per-user send limit for calls made with a user's own token."""

    def __init__(
        self,
        service: ChatService,
        authenticator: Authenticator,
        internal: InternalCredential | None = None,
        send_limit: DirectSendLimit | None = None,
    ) -> None:
        self._service = service
        self._auth = authenticator
        self._internal = internal
        self._send_limit = send_limit

    def _limited(self, context: Context) -> bool:
        """Whether this call's sends count against the per-user limit here."""
        if self._send_limit is None:
            return False
        return self._send_limit.counts({k: str(v) for k, v in context.invocation_metadata() or ()})

    async def _send(
        self, caller: uuid.UUID, send: pb.SendMessageRequest, limited: bool
    ) -> pb.SendMessageResponse:
        """One send of a SendMessage call or of a SendMessages stream: the per-user limit if it
        counts here, then the service."""
        if limited and self._send_limit is not None:
            await self._send_limit.check(caller)
        result = await self._service.send_message(
            caller, send.conversation_id, send.client_msg_id, send.content
        )
        return _sent(result)

    async def _call(
        self,
        method: str,
        context: Context,
        handler: Callable[[uuid.UUID], Awaitable[T]],
    ) -> T:
        """Authenticate, run the handler in a server span continuing the caller's trace, turn
        ChatErrors into status codes, and count the call by its outcome."""
        metadata = {k: str(v) for k, v in (context.invocation_metadata() or ())}
        started = time.perf_counter()
        code = "OK"
        with tracer().start_as_current_span(
            f"{SERVICE_NAME}/{method}",
            context=extract(metadata),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": method},
        ) as span:
            try:
                caller = await self._auth.authenticate(metadata)
                span.set_attribute("realchat.user_id", str(caller))
                return await handler(caller)
            except ChatError as exc:
                code = exc.status.name
                span.set_attribute("realchat.error_code", exc.code)
                await _abort(context, exc)
            except Exception:
                code = "INTERNAL"
                raise
            finally:
                GRPC_REQUESTS.labels(method=method, code=code).inc()
                GRPC_DURATION.labels(method=method).observe(time.perf_counter() - started)

    @_rpc
    async def CreateConversation(
        self, caller: uuid.UUID, request: pb.CreateConversationRequest
    ) -> pb.Conversation:
        record = await self._service.create_conversation(
            caller, list(request.member_ids), request.title
        )
        return conversation_to_proto(record)

    @_rpc
    async def AddMembers(self, caller: uuid.UUID, request: pb.AddMembersRequest) -> pb.Conversation:
        record = await self._service.add_members(
            caller, request.conversation_id, list(request.user_ids)
        )
        return conversation_to_proto(record)

    @_rpc
    async def RemoveMember(
        self, caller: uuid.UUID, request: pb.RemoveMemberRequest
    ) -> pb.RemoveMemberResponse:
        await self._service.remove_member(caller, request.conversation_id, request.user_id)
        return pb.RemoveMemberResponse()

    @_rpc
    async def BlockUser(
        self, caller: uuid.UUID, request: pb.BlockUserRequest
    ) -> pb.BlockUserResponse:
        await self._service.block(caller, request.user_id)
        return pb.BlockUserResponse()

    @_rpc
    async def UnblockUser(
        self, caller: uuid.UUID, request: pb.UnblockUserRequest
    ) -> pb.UnblockUserResponse:
        await self._service.unblock(caller, request.user_id)
        return pb.UnblockUserResponse()

    @_rpc
    async def ListBlockedUsers(
        self, caller: uuid.UUID, request: pb.ListBlockedUsersRequest
    ) -> pb.ListBlockedUsersResponse:
        blocked = await self._service.blocked_users(caller)
        return pb.ListBlockedUsersResponse(user_ids=[str(u) for u in blocked])

    @_rpc
    async def GetConversation(
        self, caller: uuid.UUID, request: pb.GetConversationRequest
    ) -> pb.Conversation:
        record = await self._service.get_conversation(caller, request.conversation_id)
        return conversation_to_proto(record)

    @_rpc
    async def ListConversations(
        self, caller: uuid.UUID, request: pb.ListConversationsRequest
    ) -> pb.ListConversationsResponse:
        page = await self._service.list_conversations(caller, request.page_size, request.page_token)
        return pb.ListConversationsResponse(
            conversations=[conversation_to_proto(r) for r in page.conversations],
            next_page_token=page.next_page_token or "",
        )

    @_rpc
    async def ListPositions(
        self, caller: uuid.UUID, request: pb.ListPositionsRequest
    ) -> pb.ListPositionsResponse:
        page = await self._service.list_positions(caller, request.page_size, request.page_token)
        return pb.ListPositionsResponse(
            positions=[
                pb.ConversationPosition(
                    conversation_id=str(p.conversation_id),
                    acked_seq=p.acked_seq,
                    last_seq=p.last_seq,
                    last_change=p.last_change,
                )
                for p in page.positions
            ],
            next_page_token=page.next_page_token or "",
        )

    async def SendMessage(
        self, request: pb.SendMessageRequest, context: Context
    ) -> pb.SendMessageResponse:
        return await self._call(
            "SendMessage",
            context,
            lambda caller: self._send(caller, request, self._limited(context)),
        )

    async def SendMessages(
        self, request_iterator: AsyncIterator[pb.SendMessagesRequest], context: Context
    ) -> AsyncIterator[pb.SendMessagesResponse]:
        metadata = {k: str(v) for k, v in (context.invocation_metadata() or ())}
        try:
            caller = await self._auth.authenticate(metadata)
        except ChatError as exc:
            GRPC_REQUESTS.labels(method="SendMessages", code=exc.status.name).inc()
            await _abort(context, exc)
        GRPC_REQUESTS.labels(method="SendMessages", code="OK").inc()
        limited = self._limited(context)
        async for result in self._stream_sends(caller, request_iterator, limited):
            yield result

    async def _stream_sends(
        self,
        caller: uuid.UUID,
        requests: AsyncIterator[pb.SendMessagesRequest],
        limited: bool = False,
    ) -> AsyncIterator[pb.SendMessagesResponse]:
        """Read sends, run each concurrently (so they share group-commit batches), and hand
        back each result as soon as it is ready."""
        results: asyncio.Queue[pb.SendMessagesResponse | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)
        running: set[asyncio.Task[None]] = set()

        async def send(item: pb.SendMessagesRequest) -> None:
            try:
                results.put_nowait(await self._streamed_send(caller, item, limited))
            finally:
                window.release()

        async def read() -> None:
            async for item in requests:
                await window.acquire()
                task = asyncio.create_task(send(item))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.wait(set(running))
            results.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (result := await results.get()) is not None:
                yield result
            await reader  # raises what ended the reading, if anything did
        finally:
            for task in (reader, *running):
                task.cancel()

    async def _streamed_send(
        self, caller: uuid.UUID, item: pb.SendMessagesRequest, limited: bool = False
    ) -> pb.SendMessagesResponse:
        code = "OK"
        try:
            sent = await self._send(caller, item.send, limited)
            return pb.SendMessagesResponse(request_id=item.request_id, sent=sent)
        except ChatError as exc:
            code = exc.status.name
            return pb.SendMessagesResponse(request_id=item.request_id, error=send_error(exc))
        except Exception:
            code = "INTERNAL"
            log.exception("streamed send failed", request_id=item.request_id)
            return pb.SendMessagesResponse(request_id=item.request_id, error=INTERNAL_SEND_ERROR)
        finally:
            GRPC_REQUESTS.labels(method="SendMessages/send", code=code).inc()

    async def SendMessageBatch(
        self, request: pb.SendMessageBatchRequest, context: Context
    ) -> pb.SendMessageBatchResponse:
        metadata = {k: str(v) for k, v in (context.invocation_metadata() or ())}
        code = "OK"
        try:
            if self._internal is None:
                raise PermissionDenied(
                    ErrorCode.INTERNAL_ONLY, "SendMessageBatch is for internal callers"
                )
            self._internal.verify(metadata)
            requests = _send_requests(request)
            if recording():
                results = await self._send_traced(requests)
            else:  # each send's trace context goes on as it came (to the outbox row)
                results = await self._service.send_messages(requests)
        except ChatError as exc:
            code = exc.status.name
            await _abort(context, exc)
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            GRPC_REQUESTS.labels(method="SendMessageBatch", code=code).inc()
        codes = Counter("OK" if isinstance(r, SendResult) else r.status.name for r in results)
        for status, sends in codes.items():
            GRPC_REQUESTS.labels(method="SendMessageBatch/send", code=status).inc(sends)
        return _batch_response(results)

    async def _send_traced(self, requests: list[SendRequest]) -> list[SendResult | ChatError]:
        """Batched sends, each in a server span continuing its caller's trace."""
        spans = [_send_span(r) for r in requests]
        try:
            results = await self._service.send_messages(
                [r._replace(trace_context=inject(set_span_in_context(span)))
                 for r, span in zip(requests, spans, strict=True)]
            )  # fmt: skip
            for span, result in zip(spans, results, strict=True):
                if isinstance(result, ChatError):
                    span.set_attribute("realchat.error_code", result.code)
        finally:
            for span in spans:
                span.end()
        return results

    @_rpc
    async def GetHistory(
        self, caller: uuid.UUID, request: pb.GetHistoryRequest
    ) -> pb.GetHistoryResponse:
        messages, last_seq = await self._service.history(
            caller, request.conversation_id, request.after_seq, request.limit
        )
        return pb.GetHistoryResponse(
            messages=[message_to_proto(m) for m in messages], last_seq=last_seq
        )

    @_rpc
    async def Ack(self, caller: uuid.UUID, request: pb.AckRequest) -> pb.AckResponse:
        acked = await self._service.ack(caller, request.conversation_id, request.seq)
        return pb.AckResponse(acked_seq=acked)

    @_rpc
    async def EditMessage(
        self, caller: uuid.UUID, request: pb.EditMessageRequest
    ) -> pb.ChangeMessageResponse:
        changed = await self._service.edit_message(
            caller,
            request.conversation_id,
            request.seq,
            request.client_change_id,
            request.content,
        )
        return pb.ChangeMessageResponse(
            message=message_to_proto(changed.message), created=changed.created
        )

    @_rpc
    async def DeleteMessage(
        self, caller: uuid.UUID, request: pb.DeleteMessageRequest
    ) -> pb.ChangeMessageResponse:
        changed = await self._service.delete_message(caller, request.conversation_id, request.seq)
        return pb.ChangeMessageResponse(
            message=message_to_proto(changed.message), created=changed.created
        )

    @_rpc
    async def GetChanges(
        self, caller: uuid.UUID, request: pb.GetChangesRequest
    ) -> pb.GetChangesResponse:
        messages, last = await self._service.changes(
            caller,
            request.conversation_id,
            request.after_change,
            request.up_to_seq,
            request.limit,
        )
        return pb.GetChangesResponse(
            messages=[message_to_proto(m) for m in messages], next_after_change=last
        )

    @_rpc
    async def RenameConversation(
        self, caller: uuid.UUID, request: pb.RenameConversationRequest
    ) -> pb.Conversation:
        record = await self._service.rename_conversation(
            caller, request.conversation_id, request.title
        )
        return conversation_to_proto(record)

    @_rpc
    async def GetPresence(
        self, caller: uuid.UUID, request: pb.GetPresenceRequest
    ) -> pb.GetPresenceResponse:
        records = await self._service.presence(caller, list(request.user_ids))
        return pb.GetPresenceResponse(
            users=[
                pb.UserPresence(
                    user_id=str(r.user_id),
                    status=r.status,
                    since=timestamp(r.since) if r.since is not None else None,
                )
                for r in records
            ]
        )
