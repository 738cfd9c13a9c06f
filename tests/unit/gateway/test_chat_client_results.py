"""A batched send's result as the gateway reads it: its message, or SendMessage's error."""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from realchat.chat.v1 import chat_pb2 as pb
from realchat.gateway.chat_client import ChatCallError, Sent, _sent_or_error


def _error(status: grpc.StatusCode, code: str) -> pb.SendResult:
    return pb.SendResult(error=pb.SendError(status=status.value[0], code=code, message="why"))


def test_a_stored_send_is_its_message() -> None:
    message = pb.Message(
        message_id="m", conversation_id="c", seq=7, sender_id="s", content="hi",
        created_at=Timestamp(seconds=1_700_000_000),
    )  # fmt: skip
    result = _sent_or_error(pb.SendResult(sent=pb.SendMessageResponse(message=message)))
    assert isinstance(result, Sent)
    assert (result.message.seq, result.message.content, result.created) == (7, "hi", False)


def test_a_refused_send_keeps_its_status_and_code() -> None:
    result = _sent_or_error(_error(grpc.StatusCode.PERMISSION_DENIED, "not_a_member"))
    assert isinstance(result, ChatCallError)
    assert (result.code, result.http_status, result.message) == ("not_a_member", 403, "why")


def test_a_send_that_failed_on_the_servers_side_is_unavailable_and_leaks_nothing() -> None:
    for status in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
        result = _sent_or_error(_error(status, "internal"))
        assert isinstance(result, ChatCallError)
        assert (result.code, result.http_status) == ("chat_unavailable", 503)
    unknown = _sent_or_error(pb.SendResult(error=pb.SendError(status=99, code="x")))
    assert isinstance(unknown, ChatCallError)
    assert unknown.code == "chat_unavailable"
