"""The SDK against a scripted fake server: what the application sees when the server sends
duplicates, sends out of order, cuts the connection (4008, 1001, a dropped TCP stream, a silent
handshake), drops a send's reply, refuses the token (4001), or refuses sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from realchat.client import (
    ClientOptions,
    Connected,
    Disconnected,
    IdempotencyConflict,
    Message,
    MessageUpdate,
    NotAMember,
    Presence,
    RateLimited,
    RealChatClient,
    Receipt,
    SendError,
    ServerNotice,
    Unauthorized,
)
from tests.unit.client.fake_server import DEADLINE_S, FakeConnection, FakeServer, message

pytestmark = pytest.mark.asyncio(loop_scope="session")

C = "11111111-1111-1111-1111-111111111111"
D = "22222222-2222-2222-2222-222222222222"

OPTIONS = ClientOptions(
    reconnect_initial_s=0.01,
    reconnect_max_s=0.05,
    handshake_timeout_s=DEADLINE_S,
    gap_timeout_s=0.2,
)

T = TypeVar("T")


@asynccontextmanager
async def client_of(server: FakeServer, **kwargs: Any) -> AsyncIterator[RealChatClient]:
    positions = kwargs.pop("positions", None)
    options = replace(OPTIONS, **kwargs)
    async with RealChatClient(
        server.base_url, "token", options=options, positions=positions
    ) as client:
        yield client
    assert server.errors == []


async def take(stream: AsyncIterator[T], n: int) -> list[T]:
    async with asyncio.timeout(DEADLINE_S):
        return [await anext(stream) for _ in range(n)]


async def take_messages(stream: AsyncIterator[Message], n: int) -> list[tuple[str, int]]:
    return [(m.conversation_id, m.seq) for m in await take(stream, n)]


async def next_of(stream: AsyncIterator[object], kind: type[T]) -> T:
    async with asyncio.timeout(DEADLINE_S):
        while not isinstance(item := await anext(stream), kind):
            pass
        return item


def in_c(*seqs: int) -> list[tuple[str, int]]:
    return [(C, n) for n in seqs]


async def plain_sync(conn: FakeConnection, done: dict[str, int]) -> None:
    """The first connection of a client without positions: hello, a plain sync, done."""
    await conn.hello()
    sync = await conn.expect("sync")
    assert sync.get("positions") is None, sync
    await conn.sync_done(done)


async def test_duplicates_and_out_of_order_frames_reach_the_app_once_in_order() -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.hello()
        sync = await conn.expect("sync")
        assert sync.get("positions") is None  # no positions given: from the acked cursors
        await conn.messages(C, 2, 1, 2)  # the backfill, with a redelivery
        await conn.sync_done({C: 2})
        await conn.messages(C, 4, 3, 3, 5, 1, 6, 5)
        await conn.messages(C, 7)  # last: anything extra would have come before it

    async with FakeServer([script]) as server, client_of(server) as client:
        assert await take_messages(client.messages(), 7) == in_c(1, 2, 3, 4, 5, 6, 7)
        assert client.ordering.duplicates == 4
        assert client.positions() == {C: 7}


@pytest.mark.parametrize("cut", ["close 4008", "close 1001", "tcp drop"])
async def test_a_cut_connection_reconnects_and_syncs_from_the_contiguous_positions(
    cut: str,
) -> None:
    app_has_five = asyncio.Event()

    async def first(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        await conn.messages(C, 1, 2, 3, 4, 5, 7)  # 6 is missing: 7 is held back
        await app_has_five.wait()
        if cut == "tcp drop":
            conn.drop()
        else:
            await conn.close(int(cut.split()[1]), "bye")

    async def second(conn: FakeConnection) -> None:
        await conn.hello()
        sync = await conn.expect("sync")
        # Highest contiguous seq in each conversation, and D, found in the listing, from 0.
        assert sync["positions"] == {C: 5, D: 0}
        await conn.messages(C, 6, 7, 8)
        await conn.sync_done({C: 8, D: 0})
        await conn.messages(C, 7, 9)

    async with FakeServer([first, second], [C, D]) as server, client_of(server) as client:
        stream = client.messages()
        assert await take_messages(stream, 5) == in_c(1, 2, 3, 4, 5)
        app_has_five.set()
        assert await take_messages(stream, 4) == in_c(6, 7, 8, 9)
        await server.script_done(1)
        assert server.listings == 1  # only the reconnect lists conversations
        up, lost, up_again = await take(client.events(), 3)
        assert isinstance(up, Connected)
        assert isinstance(up_again, Connected)
        assert (up.connection, up_again.connection) == (1, 2)
        assert isinstance(lost, Disconnected)
        assert lost.reconnect_in is not None
        if cut != "tcp drop":
            assert lost.code == int(cut.split()[1])


async def test_a_send_cut_off_before_its_reply_is_sent_again_with_the_same_id() -> None:
    first_send: dict[str, Any] = {}

    async def first(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        first_send.update(await conn.expect("send"))
        conn.drop()  # no send_ok: the client cannot know whether it was stored

    async def second(conn: FakeConnection) -> None:
        await conn.hello()
        assert (await conn.expect("sync"))["positions"] == {C: 0}
        await conn.sync_done({C: 0})
        again = await conn.expect("send")
        assert again == first_send  # same frame: same client_msg_id, same content
        ok = {"type": "send_ok", "client_msg_id": again["client_msg_id"],
              "message": message(C, 1, again["content"])}  # fmt: skip
        await conn.send(ok)
        await conn.send(ok)  # a repeated reply
        await conn.messages(C, 1, 2)  # its echo (at-least-once), then the next message

    async with FakeServer([first, second], [C]) as server, client_of(server) as client:
        stream = client.messages()
        sent = await client.send(C, "hello")
        assert (sent.seq, sent.content) == (1, "hello")
        assert len(first_send["client_msg_id"]) == 32  # uuid4 hex
        assert await take_messages(stream, 2) == in_c(1, 2)
        await server.script_done(1)
        assert len(server.connections[1].of_type("send")) == 1


async def test_a_send_issued_while_disconnected_goes_out_after_the_sync() -> None:
    reconnecting = asyncio.Event()

    async def first(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 3})
        await conn.close(1001, "draining")

    async def second(conn: FakeConnection) -> None:
        await conn.hello()
        await reconnecting.wait()
        sync = await conn.expect("sync")
        await conn.messages(C, 4)
        await conn.sync_done({C: 4})
        send = await conn.expect("send")
        sent_after_sync = conn.frames.index(send) > conn.frames.index(sync)
        assert sent_after_sync
        await conn.send(
            {"type": "send_ok", "client_msg_id": send["client_msg_id"],
             "message": message(C, 5, send["content"])}
        )  # fmt: skip

    async with FakeServer([first, second], [C]) as server, client_of(server) as client:
        events = client.events()
        assert isinstance((await take(events, 2))[1], Disconnected)
        sending = asyncio.create_task(client.send(C, "while away", client_msg_id="k-1"))
        reconnecting.set()
        assert (await asyncio.wait_for(sending, DEADLINE_S)).seq == 5
        assert await take_messages(client.messages(), 2) == in_c(4, 5)


async def test_close_4001_stops_the_client_without_a_retry() -> None:
    async def refuse(conn: FakeConnection) -> None:
        await conn.close(4001, "unauthorized")

    async with FakeServer([refuse]) as server, client_of(server) as client:
        with pytest.raises(Unauthorized, match="4001"):
            await client.wait_ready(timeout_s=DEADLINE_S)
        with pytest.raises(Unauthorized):
            await anext(client.messages())
        with pytest.raises(Unauthorized):
            await client.send(C, "anyone?")
        events = client.events()
        (refused,) = await take(events, 1)
        assert isinstance(refused, Disconnected)
        assert (refused.code, refused.reconnect_in) == (4001, None)
        with pytest.raises(Unauthorized):
            await anext(events)  # nothing else happened, and nothing will
        # The connection task has ended: nothing is left that could try again.
        assert client.connection.attempts == 1
        assert len(server.connections) == 1


async def test_refused_sends_raise_typed_errors_and_other_errors_are_notices() -> None:
    async def script(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        for code in ("idempotency_conflict", "rate_limited", "not_a_member", "brand_new"):
            send = await conn.expect("send")
            await conn.send(
                {"type": "error", "code": code, "message": "no",
                 "client_msg_id": send["client_msg_id"]}
            )  # fmt: skip
        ack = await conn.expect("ack")
        assert ack == {"type": "ack", "conversation_id": C, "seq": 9}
        await conn.send({"type": "error", "code": "invalid_seq", "message": "beyond the end"})

    async with (
        FakeServer([script]) as server,
        client_of(server, rate_limited_retry_s=0) as client,  # RateLimited at once
    ):
        with pytest.raises(IdempotencyConflict) as conflict:
            await client.send(C, "a", client_msg_id="k1")
        assert (conflict.value.code, conflict.value.client_msg_id) == ("idempotency_conflict", "k1")
        with pytest.raises(RateLimited):
            await client.send(C, "b")
        with pytest.raises(NotAMember):
            await client.send(C, "c")
        with pytest.raises(SendError) as other:
            await client.send(C, "d")
        assert type(other.value) is SendError
        assert other.value.code == "brand_new"
        await client.ack(C, 9)
        events = await take(client.events(), 2)
        assert events[1] == ServerNotice("invalid_seq", "beyond the end", None)


async def test_a_gap_the_server_does_not_fill_is_synced_after_the_gap_timeout() -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.hello()
        await conn.expect("sync")
        await conn.messages(C, 1)
        await conn.sync_done({C: 1})
        await conn.messages(C, 3)  # 2 never comes by itself
        sync = await conn.expect("sync")
        assert sync["positions"] == {C: 1}
        await conn.messages(C, 2, 3)
        await conn.sync_done({C: 3})
        await conn.messages(C, 4)

    async with FakeServer([script]) as server, client_of(server) as client:
        assert await take_messages(client.messages(), 4) == in_c(1, 2, 3, 4)
        await server.script_done(0)


async def test_a_gap_sync_passes_the_change_counters_so_changes_lost_live_are_sent() -> None:
    """A gap sync without the counters would move them past an edit whose live frame was lost
    (its sync_done tells the newer counter), and the edit would never come."""

    async def script(conn: FakeConnection) -> None:
        await conn.hello()
        await conn.expect("sync")
        await conn.messages(C, 1)
        await conn.sync_done({C: 1}, changes={C: 4})
        await conn.messages(C, 3)  # 2 never comes by itself
        sync = await conn.expect("sync")
        assert sync["positions"] == {C: 1}
        assert sync["changes"] == {C: 4}, "the server cannot catch up what it is not asked for"
        await conn.messages(C, 2, 3)
        await conn.sync_done({C: 3}, changes={C: 6})

    async with FakeServer([script]) as server, client_of(server) as client:
        assert await take_messages(client.messages(), 3) == in_c(1, 2, 3)
        await server.script_done(0)


async def test_a_conversation_first_seen_live_catches_up_on_changes_from_its_start() -> None:
    """No sync told the counter of a conversation that began after the handshake: the next
    sync names 0, so an edit made while the device was away still comes."""
    app_has_two = asyncio.Event()

    async def first(conn: FakeConnection) -> None:
        await plain_sync(conn, {})
        await conn.messages(C, 1, 2)  # a conversation started after the handshake
        await app_has_two.wait()
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.hello()
        sync = await conn.expect("sync")
        assert sync["positions"] == {C: 2}
        assert sync["changes"] == {C: 0}, "the changes of what it holds, from the first"
        await conn.send({"type": "message_update", "message": {**message(C, 1), "version": 2}})
        await conn.sync_done({C: 2}, changes={C: 5})

    async with FakeServer([first, second], [C]) as server, client_of(server) as client:
        assert await take_messages(client.messages(), 2) == in_c(1, 2)
        app_has_two.set()
        update = await next_of(client.events(), MessageUpdate)
        assert (update.message.seq, update.message.version) == (1, 2)
        await server.script_done(1)


async def test_a_conversation_the_baseline_started_mid_way_asks_for_no_earlier_changes() -> None:
    """Seen live during the baseline at seq 5 and absent from its sync_done: the device never
    had 1-4, so its next sync names no counter (the server would send their changes)."""
    baseline_done = asyncio.Event()

    async def first(conn: FakeConnection) -> None:
        await conn.hello()
        await conn.expect("sync")
        await conn.messages(D, 5)  # created while the baseline ran
        await conn.sync_done({C: 0}, changes={C: 3})
        await baseline_done.wait()
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.hello()
        sync = await conn.expect("sync")
        assert sync["positions"] == {C: 0, D: 5}
        assert sync["changes"] == {C: 3}
        await conn.sync_done({C: 0, D: 5}, changes={C: 3, D: 7})

    async with FakeServer([first, second], [C, D]) as server, client_of(server) as client:
        assert await take_messages(client.messages(), 1) == [(D, 5)]
        baseline_done.set()
        await server.script_done(1)


@pytest.mark.parametrize("code", ["sync_failed", "chat_unavailable"])
async def test_a_refused_handshake_sync_fails_the_connection_though_live_frames_flow(
    code: str,
) -> None:
    """The chat service was down for the handshake's sync (`sync_failed` when its history could
    not be read, `chat_unavailable` when the conversations could not even be listed; no
    sync_done ever), while live frames kept coming: the client reconnects and syncs again,
    instead of waiting for good with its sends unwritten."""
    stop_live = asyncio.Event()

    async def refused(conn: FakeConnection) -> None:
        await plain_sync_refused(conn)
        await conn.live_until(stop_live, C)

    async def second(conn: FakeConnection) -> None:
        stop_live.set()
        await plain_sync(conn, {C: 0})  # still a baseline: the first one never completed

    async def plain_sync_refused(conn: FakeConnection) -> None:
        await conn.hello()
        await conn.expect("sync")
        await conn.send({"type": "error", "code": code, "message": "chat unavailable"})

    scripts = [refused, second]
    async with FakeServer(scripts) as server, client_of(server, handshake_timeout_s=5) as client:
        await client.wait_ready(timeout_s=DEADLINE_S)
        await server.script_done(1)
        notice = await next_of(client.events(), ServerNotice)
        assert notice.code == code
        lost = await next_of(client.events(), Disconnected)
        assert f"the handshake's sync failed: {code}" in lost.reason


async def test_a_silent_handshake_is_abandoned_and_the_baseline_is_asked_for_again() -> None:
    async def silent(conn: FakeConnection) -> None:
        await conn.hello()
        await conn.expect("sync")  # ...and never a sync_done

    async def second(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 1})  # still a plain sync: the baseline never completed

    scripts = [silent, second]
    async with FakeServer(scripts) as server, client_of(server, handshake_timeout_s=0.3) as client:
        await client.wait_ready(timeout_s=DEADLINE_S)
        lost = (await take(client.events(), 1))[0]
        assert isinstance(lost, Disconnected)
        assert "sync_done" in lost.reason
        await server.script_done(1)


async def test_positions_from_the_application_are_where_the_first_sync_starts() -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.hello()
        sync = await conn.expect("sync")
        assert sync["positions"] == {C: 10, D: 0}
        await conn.messages(C, 10, 11)
        await conn.messages(D, 1)
        await conn.sync_done({C: 11, D: 1})

    async with (
        FakeServer([script], [C, D]) as server,
        client_of(server, positions={C: 10}) as client,
    ):
        assert sorted(await take_messages(client.messages(), 2)) == [(C, 11), (D, 1)]
        assert client.positions() == {C: 11, D: 1}


async def test_auto_acks_are_batched_and_receipts_and_presence_are_events() -> None:
    async def script(conn: FakeConnection) -> None:
        await conn.hello()
        await conn.expect("sync")
        await conn.messages(C, 1, 2, 3, 4, 5)
        await conn.sync_done({C: 5})
        await conn.send({"type": "receipt", "conversation_id": C, "user_id": "u2", "seq": 4})
        await conn.send({"type": "presence", "user_id": "u2", "status": "offline"})
        assert (await conn.expect("ack"))["seq"] == 5

    async with (
        FakeServer([script]) as server,
        client_of(server, auto_ack=True, auto_ack_interval_s=0.05) as client,
    ):
        await client.wait_ready(timeout_s=DEADLINE_S)
        assert await take_messages(client.messages(), 5) == in_c(1, 2, 3, 4, 5)
        events = await take(client.events(), 3)
        assert events[1:] == [Receipt(C, "u2", 4), Presence("u2", "offline")]
        await server.script_done(0)
        assert server.connections[0].of_type("ack") == [
            {"type": "ack", "conversation_id": C, "seq": 5}
        ]


async def test_a_full_inbox_leaves_messages_out_and_syncs_them_once_read() -> None:
    app_has_all = asyncio.Event()
    syncs: list[int] = []

    async def script(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        await conn.messages(C, *range(1, 21))  # the inbox takes 4
        await conn.send({"type": "presence", "user_id": "u2", "status": "online"})
        # Answer each sync (sent once the application has read half the inbox) with what
        # follows its position, until the application has everything.
        while (sync := await conn.expect_unless("sync", app_has_all)) is not None:
            position = sync["positions"][C]
            syncs.append(position)
            await conn.messages(C, *range(position + 1, 21))
            await conn.sync_done({C: 20})

    async with (
        FakeServer([script]) as server,
        client_of(server, max_buffered_messages=4) as client,
    ):
        # Once the presence frame is an event, all 20 messages went through the client.
        assert isinstance((await take(client.events(), 2))[1], Presence)
        assert await take_messages(client.messages(), 20) == in_c(*range(1, 21))
        app_has_all.set()
        await server.script_done(0)
        assert syncs[0] == 4
        assert syncs == sorted(set(syncs))


async def test_a_send_ok_overtaking_lower_seqs_is_shown_after_them() -> None:
    async def script(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 1})
        send = await conn.expect("send")
        await conn.send(
            {"type": "send_ok", "client_msg_id": send["client_msg_id"],
             "message": message(C, 4, send["content"])}
        )  # fmt: skip
        await conn.messages(C, 2, 3)  # still on their way when the send_ok came
        await conn.messages(C, 5)

    async with FakeServer([script]) as server, client_of(server) as client:
        mine = await client.send(C, "mine")
        assert mine.seq == 4
        received = await take(client.messages(), 4)
        assert [(m.seq, m.content) for m in received] == [
            (2, "m2"),
            (3, "m3"),
            (4, "mine"),
            (5, "m5"),
        ]


async def test_a_rate_limited_send_is_retried_with_the_same_id_until_stored() -> None:
    async def script(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        first = await conn.expect("send")
        for _ in range(2):  # refused before anything was stored: the client writes it again
            await conn.send(
                {"type": "error", "code": "rate_limited", "message": "slow down",
                 "client_msg_id": first["client_msg_id"]}
            )  # fmt: skip
            assert await conn.expect("send") == first
        await conn.send(
            {"type": "send_ok", "client_msg_id": first["client_msg_id"],
             "message": message(C, 1, first["content"])}
        )  # fmt: skip

    async with FakeServer([script]) as server, client_of(server) as client:
        sent = await client.send(C, "patient")
        assert (sent.seq, sent.content) == (1, "patient")
        assert await take_messages(client.messages(), 1) == in_c(1)
        await server.script_done(0)
        assert len(server.connections[0].of_type("send")) == 3


async def test_a_send_rate_limited_longer_than_the_retry_budget_raises() -> None:
    gave_up = asyncio.Event()

    async def script(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        while (send := await conn.expect_unless("send", gave_up)) is not None:
            await conn.send(
                {"type": "error", "code": "rate_limited", "message": "slow down",
                 "client_msg_id": send["client_msg_id"]}
            )  # fmt: skip

    async with (
        FakeServer([script]) as server,
        client_of(server, rate_limited_retry_s=0.5) as client,
    ):
        with pytest.raises(RateLimited):
            await client.send(C, "never")
        gave_up.set()
        await server.script_done(0)
        assert len(server.connections[0].of_type("send")) >= 2  # it did try again


@pytest.mark.parametrize("acked", [0, 5])
async def test_a_live_frame_ahead_of_the_baseline_backfill_waits_for_it(acked: int) -> None:
    """First connection (plain sync from the acknowledged cursor): live message 9 overtakes the
    backfill of 1..8 (or 6..8 after an acknowledged 5) and its sync_done."""

    async def script(conn: FakeConnection) -> None:
        await conn.hello()
        assert (await conn.expect("sync")).get("positions") is None
        await conn.messages(C, 9)  # live, published while the backfill was being read
        await conn.messages(C, *range(acked + 1, 9))
        await conn.sync_done({C: 8})
        await conn.messages(C, 9, 10)  # the live copy of 9 again, then the next one

    async with FakeServer([script]) as server, client_of(server) as client:
        assert await take_messages(client.messages(), 10 - acked) == in_c(*range(acked + 1, 11))
        await server.script_done(0)
        assert client.positions() == {C: 10}


async def test_a_live_frame_ahead_of_the_reconnect_backfill_waits_for_it() -> None:
    """Reconnect with position 5: live 9 arrives before the sync's backfill 6..8 and its
    sync_done; the backfill repeats 9."""
    app_has_five = asyncio.Event()

    async def first(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        await conn.messages(C, 1, 2, 3, 4, 5)
        await app_has_five.wait()
        conn.drop()

    async def second(conn: FakeConnection) -> None:
        await conn.hello()
        assert (await conn.expect("sync"))["positions"] == {C: 5}
        await conn.messages(C, 9)
        await conn.messages(C, 6, 7, 8, 9)
        await conn.sync_done({C: 9})
        await conn.messages(C, 10)

    async with FakeServer([first, second], [C]) as server, client_of(server) as client:
        stream = client.messages()
        assert await take_messages(stream, 5) == in_c(1, 2, 3, 4, 5)
        app_has_five.set()
        assert await take_messages(stream, 5) == in_c(6, 7, 8, 9, 10)
        await server.script_done(1)
        assert client.ordering.duplicates == 1  # the backfill's 9
        assert client.gap_syncs == 0  # the handshake's sync filled the gap: no extra sync


async def test_live_frames_during_a_gap_sync_are_taken_once_in_order() -> None:
    """A gap (2 missing) makes the client sync from 1; live 4 and 5 arrive while that sync is
    in flight, and its backfill (2..5) repeats them."""

    async def script(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        await conn.messages(C, 1, 3)  # 2 is lost on the way
        sync = await conn.expect("sync")
        assert sync["positions"] == {C: 1}
        await conn.messages(C, 4, 5)  # live, before the sync is answered
        await conn.messages(C, 2, 3, 4, 5)  # the sync's backfill
        await conn.sync_done({C: 5})
        await conn.messages(C, 6)

    async with FakeServer([script]) as server, client_of(server) as client:
        assert await take_messages(client.messages(), 6) == in_c(1, 2, 3, 4, 5, 6)
        await server.script_done(0)
        assert client.gap_syncs == 1
        assert client.ordering.duplicates == 3  # 3, 4 and 5 came twice


async def test_a_reconnect_whose_listing_fails_while_live_frames_flow_reconnects() -> None:
    """A chaos run's 127 s stall: the client reconnected while the chat service was down, its
    conversation listing failed (503), and live frames kept coming on the new connection. The
    failed handshake must end that connection and the next one must write the waiting send."""
    stop_live = asyncio.Event()

    async def first(conn: FakeConnection) -> None:
        await plain_sync(conn, {C: 0})
        await conn.expect("send")
        await conn.close(1001, "going away")  # the gateway dies before the reply

    async def listing_refused(conn: FakeConnection) -> None:
        await conn.hello()
        await conn.live_until(stop_live, D, interval_s=0.01)

    async def third(conn: FakeConnection) -> None:
        stop_live.set()
        await conn.hello()
        sync = await conn.expect("sync")
        await conn.sync_done(sync["positions"])
        send = await conn.expect("send")
        await conn.send({"type": "send_ok", "client_msg_id": send["client_msg_id"],
                         "message": message(C, 1, send["content"])})  # fmt: skip

    scripts = [first, listing_refused, third]
    async with FakeServer(scripts, [C]) as server, client_of(server) as client:
        await client.wait_ready(timeout_s=DEADLINE_S)
        server.listings_refused = 1
        sent = asyncio.create_task(client.send(C, "hi", client_msg_id="m1", timeout_s=DEADLINE_S))
        async with asyncio.timeout(DEADLINE_S):
            assert (await sent).seq == 1
        await server.script_done(2)
