"""The chat rules: who may do what, what input is valid, and what an idempotent send means.

Transport-free (the gRPC servicer and tests call it alike) and storage-agnostic beyond `ChatStore`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from realchat.chat.batch import Created, Existing, NewMessage, Stored, fan_out, plan_batch
from realchat.chat.changes_store import Changed, ChangesStore
from realchat.chat.errors import (
    ChatError,
    IdempotencyConflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from realchat.chat.group_commit import GroupCommitLimits, GroupCommitter
from realchat.chat.membership import Candidate, additions, removal
from realchat.chat.membership_store import MembershipStore, PositionRecord
from realchat.chat.metrics import GROUP_COMMIT_BATCH_SIZE
from realchat.chat.store import (
    ChatStore,
    ConversationRecord,
    Membership,
    MessageRecord,
    PresenceRecord,
)
from realchat.contract.error_codes import ErrorCode
from realchat.contract.limits import (
    DEFAULT_CONVERSATIONS_PAGE,
    DEFAULT_HISTORY_LIMIT,
    MAX_BLOCKED_LISTED,
    MAX_CLIENT_MSG_ID_CHARS,
    MAX_CONTENT_CHARS,
    MAX_CONVERSATIONS_PAGE,
    MAX_HISTORY_LIMIT,
    MAX_PRESENCE_USERS,
    MAX_TITLE_CHARS,
)
from realchat.events.models import MembershipChange
from realchat.observability.tracing import inject
from realchat.outbox.wakeup import encode_shards
from realchat.outbox.writer import outbox_shard


@dataclass(frozen=True)
class ConversationsPage:
    conversations: list[ConversationRecord]
    #: Where the next page starts; None on the last page.
    next_page_token: str | None


@dataclass(frozen=True)
class PositionsPage:
    positions: list[PositionRecord]
    #: Where the next page starts; None on the last page.
    next_page_token: str | None


def _page_request(page_size: int, page_token: str) -> tuple[int, uuid.UUID | None]:
    """A page's size (0: the default) and the conversation id it starts after."""
    size = page_size or DEFAULT_CONVERSATIONS_PAGE
    if not 1 <= size <= MAX_CONVERSATIONS_PAGE:
        raise InvalidArgument(
            ErrorCode.INVALID_PAGE_SIZE, f"page_size must be 1-{MAX_CONVERSATIONS_PAGE}"
        )
    return size, parse_id(page_token, "page_token") if page_token else None


def _next_page_token(read: Sequence[ConversationRecord | PositionRecord], size: int) -> str | None:
    """The token of the page after one of `size` (read with one row more): None if it is last."""
    return str(read[size - 1].conversation_id) if len(read) > size else None


class SendRequest(NamedTuple):
    """One send of `ChatService.send_messages`: `send_message`'s arguments."""

    caller: uuid.UUID
    conversation_id: str
    client_msg_id: str
    content: str
    trace_context: dict[str, str] | None = None


@dataclass(frozen=True)
class SendResult:
    message: MessageRecord
    #: False when the send was a replay of an earlier one with the same client_msg_id.
    created: bool


def parse_id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"invalid_{what}", f"{what} must be a UUID") from None


def _check_text(value: str, what: str, max_chars: int, *, allow_empty: bool = False) -> None:
    if not allow_empty and not value:
        raise InvalidArgument(f"invalid_{what}", f"{what} must not be empty")
    if len(value) > max_chars:
        raise InvalidArgument(f"invalid_{what}", f"{what} is longer than {max_chars} characters")
    if "\x00" in value:
        raise InvalidArgument(f"invalid_{what}", f"{what} must not contain NUL characters")


def _check_seq(seq: int) -> None:
    if seq < 1:
        raise InvalidArgument(ErrorCode.INVALID_SEQ, "seq must be >= 1")


def _message_page_limit(limit: int) -> int:
    """The size of a page of messages (history or changes); 0 asks for the default."""
    limit = limit or DEFAULT_HISTORY_LIMIT
    if not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise InvalidArgument(ErrorCode.INVALID_LIMIT, f"limit must be 1-{MAX_HISTORY_LIMIT}")
    return limit


def _nothing(shards: Collection[int] | None = None) -> None:
    pass


class ChatService:
    """`written` is called after every commit that stored new outbox events, with their outbox
    shards (the outbox publisher's wake-up); it must not block. A send batch that was the only
    one in flight wakes the publisher from its own transaction instead (`_write_batch`)."""

    def __init__(
        self,
        store: ChatStore,
        max_members: int = 1000,
        group_commit: GroupCommitLimits | None = None,
        written: Callable[[Collection[int] | None], None] = _nothing,
        membership: MembershipStore | None = None,
    ) -> None:
        self._store = store
        self._changes = ChangesStore(store.pool, store.outbox_shards)
        self._membership = membership or MembershipStore(store.pool, store.outbox_shards)
        self._max_members = max_members
        self._written = written
        #: Whether anyone is woken after commits (the chat service's wiring: the publisher).
        self._waking = written is not _nothing
        self._sends: GroupCommitter[NewMessage, Stored] = GroupCommitter(
            self._write_batch, group_commit or GroupCommitLimits(), GROUP_COMMIT_BATCH_SIZE.observe
        )

    async def drain(self) -> None:
        """Finish the sends already accepted (on shutdown, once no new ones come)."""
        await self._sends.drain()

    async def create_conversation(
        self, caller: uuid.UUID, member_ids: list[str], title: str
    ) -> ConversationRecord:
        _check_text(title, "title", MAX_TITLE_CHARS, allow_empty=True)
        members = self._parse_members(member_ids, "member_ids")
        return await self._membership.create_conversation(caller, members, title, self._additions)

    async def add_members(
        self, caller: uuid.UUID, conversation_id: str, user_ids: list[str]
    ) -> ConversationRecord:
        conversation = parse_id(conversation_id, "conversation_id")
        members = self._parse_members(user_ids, "user_ids")
        if not members:
            raise InvalidArgument(ErrorCode.INVALID_USER_IDS, "user_ids must not be empty")
        await self._require_member(conversation, caller)
        record = await self._membership.add_members(conversation, caller, members, self._additions)
        if record is None:
            raise NotFound(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")
        return record

    def _additions(self, candidates: list[Candidate], members_now: int) -> list[uuid.UUID]:
        return additions(candidates, members_now, self._max_members)

    async def remove_member(
        self, caller: uuid.UUID, conversation_id: str, user_id: str
    ) -> MembershipChange:
        """Leave (`user_id` is the caller) or, as the creator, remove a member; the change."""
        conversation = parse_id(conversation_id, "conversation_id")
        target = parse_id(user_id, "user_id")

        def rule(
            creator: uuid.UUID, actor_is_member: bool, target_is_member: bool
        ) -> MembershipChange:
            return removal(
                caller,
                target,
                creator,
                actor_is_member=actor_is_member,
                target_is_member=target_is_member,
            )

        change = await self._membership.remove_member(conversation, caller, target, rule)
        if change is None:
            raise NotFound(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")
        return change

    async def block(self, caller: uuid.UUID, user_id: str) -> None:
        blocked = parse_id(user_id, "user_id")
        if blocked == caller:
            raise InvalidArgument(ErrorCode.INVALID_USER_ID, "you cannot block yourself")
        if not await self._membership.block(caller, blocked):
            raise NotFound(ErrorCode.USER_NOT_FOUND, "no such user")

    async def unblock(self, caller: uuid.UUID, user_id: str) -> None:
        await self._membership.unblock(caller, parse_id(user_id, "user_id"))

    async def blocked_users(self, caller: uuid.UUID) -> list[uuid.UUID]:
        return await self._membership.blocked(caller, MAX_BLOCKED_LISTED)

    async def get_conversation(self, caller: uuid.UUID, conversation_id: str) -> ConversationRecord:
        conversation = parse_id(conversation_id, "conversation_id")
        await self._require_member(conversation, caller)
        record = await self._store.get_conversation(conversation, caller)
        if record is None:
            raise NotFound(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")
        return record

    async def list_conversations(
        self, caller: uuid.UUID, page_size: int = 0, page_token: str = ""
    ) -> ConversationsPage:
        """A page of the caller's conversations, by id: no reply grows with their number."""
        size, after = _page_request(page_size, page_token)
        read = await self._membership.conversations_page(caller, after, size + 1)
        return ConversationsPage(read[:size], _next_page_token(read, size))

    async def list_positions(
        self, caller: uuid.UUID, page_size: int = 0, page_token: str = ""
    ) -> PositionsPage:
        """A page of the caller's positions (`list_conversations`'s pages, lighter rows)."""
        size, after = _page_request(page_size, page_token)
        read = await self._membership.positions_page(caller, after, size + 1)
        return PositionsPage(read[:size], _next_page_token(read, size))

    async def send_message(
        self,
        caller: uuid.UUID,
        conversation_id: str,
        client_msg_id: str,
        content: str,
        trace_context: dict[str, str] | None = None,
    ) -> SendResult:
        send = _new_message(caller, conversation_id, client_msg_id, content, trace_context)
        return await self._result(send, await self._sends.submit(send))

    async def send_messages(self, sends: Sequence[SendRequest]) -> list[SendResult | ChatError]:
        """Many sends (of any senders) at once: they join the same group-commit batches, and
        each gets its own result or error, in order. Raises only what failed a whole batch
        (the database unreachable)."""
        results: list[SendResult | ChatError | None] = [None] * len(sends)
        valid: list[tuple[int, NewMessage]] = []
        for i, request in enumerate(sends):
            try:
                valid.append((i, _new_message(*request)))
            except ChatError as exc:
                results[i] = exc
        stored = await self._sends.submit_many([send for _, send in valid])
        for (i, send), outcome in zip(valid, stored, strict=True):
            try:
                results[i] = await self._result(send, outcome)
            except ChatError as exc:
                results[i] = exc
        return [r for r in results if r is not None]

    async def _result(self, send: NewMessage, outcome: Stored) -> SendResult:
        if isinstance(outcome, Created):
            return SendResult(outcome.message, created=True)
        if isinstance(outcome, Existing):
            return _replay(outcome.message, send.conversation_id, send.content)
        await self._require_member(send.conversation_id, send.sender_id)
        raise AssertionError("send refused although the caller is a member")

    async def _write_batch(self, sends: Sequence[NewMessage]) -> list[Stored]:
        plan = plan_batch(sends)
        leaders = [sends[i] for i in plan.leaders]
        # The only batch in flight (an idle service's send): the publisher's wake-up rides in
        # its transaction, one round trip sooner than after the commit. PostgreSQL serialises
        # the commits of notifying transactions, so batches that overlap others notify after.
        wake = None
        if self._waking and self._sends.inflight == 1:
            wake = encode_shards(self._shards({s.conversation_id for s in leaders}))
        written = await self._store.insert_messages(leaders, wake=wake)
        created = {o.message.conversation_id for o in written if isinstance(o, Created)}
        if created and wake is None:
            self._written(self._shards(created))
        return fan_out(plan, written)

    def _shards(self, conversations: Collection[uuid.UUID]) -> set[int]:
        return {outbox_shard(c, self._store.outbox_shards) for c in conversations}

    async def history(
        self, caller: uuid.UUID, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[MessageRecord], int]:
        conversation = parse_id(conversation_id, "conversation_id")
        if after_seq < 0:
            raise InvalidArgument(ErrorCode.INVALID_AFTER_SEQ, "after_seq must be >= 0")
        limit = _message_page_limit(limit)
        membership = await self._require_member(conversation, caller)
        messages = await self._store.history(conversation, after_seq, limit, membership.last_seq)
        return messages, membership.last_seq

    async def ack(
        self,
        caller: uuid.UUID,
        conversation_id: str,
        seq: int,
        trace_context: dict[str, str] | None = None,
    ) -> int:
        conversation = parse_id(conversation_id, "conversation_id")
        membership = await self._require_member(conversation, caller)
        if not 0 <= seq <= membership.last_seq:
            raise InvalidArgument(
                ErrorCode.INVALID_SEQ,
                f"seq must be between 0 and the last seq ({membership.last_seq})",
            )
        moved = await self._store.ack(conversation, caller, seq, trace_context or {})
        return moved if moved is not None else max(seq, membership.acked_seq)

    async def edit_message(
        self,
        caller: uuid.UUID,
        conversation_id: str,
        seq: int,
        client_change_id: str,
        content: str,
        trace_context: dict[str, str] | None = None,
    ) -> Changed:
        """The sender edits their message (see `changes.py` for the rules)."""
        conversation = parse_id(conversation_id, "conversation_id")
        _check_seq(seq)
        _check_text(client_change_id, "client_change_id", MAX_CLIENT_MSG_ID_CHARS)
        _check_text(content, "content", MAX_CONTENT_CHARS)
        changed = await self._changes.change_message(
            conversation,
            seq,
            caller,
            content=content,
            key=client_change_id,
            trace_context=trace_context or inject(),
        )
        return self._after_change(changed, conversation)

    async def delete_message(
        self,
        caller: uuid.UUID,
        conversation_id: str,
        seq: int,
        trace_context: dict[str, str] | None = None,
    ) -> Changed:
        """The sender deletes their message: a tombstone at the same seq."""
        conversation = parse_id(conversation_id, "conversation_id")
        _check_seq(seq)
        changed = await self._changes.change_message(
            conversation, seq, caller, content=None, key=None,
            trace_context=trace_context or inject(),
        )  # fmt: skip
        return self._after_change(changed, conversation)

    def _after_change(self, changed: Changed | None, conversation: uuid.UUID) -> Changed:
        if changed is None:
            raise NotFound(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")
        if changed.created:
            self._written(self._shards([conversation]))
        return changed

    async def changes(
        self,
        caller: uuid.UUID,
        conversation_id: str,
        after_change: int,
        up_to_seq: int,
        limit: int,
    ) -> tuple[list[MessageRecord], int]:
        """What changed after `after_change` among the messages up to `up_to_seq` (a returning
        client's catch-up: history gives it the messages after its position)."""
        conversation = parse_id(conversation_id, "conversation_id")
        if after_change < 0:
            raise InvalidArgument(ErrorCode.INVALID_AFTER_CHANGE, "after_change must be >= 0")
        limit = _message_page_limit(limit)
        membership = await self._require_member(conversation, caller)
        up_to = min(up_to_seq, membership.last_seq)
        return await self._changes.changed_after(conversation, after_change, up_to, limit)

    async def rename_conversation(
        self, caller: uuid.UUID, conversation_id: str, title: str
    ) -> ConversationRecord:
        conversation = parse_id(conversation_id, "conversation_id")
        _check_text(title, "title", MAX_TITLE_CHARS, allow_empty=True)
        record = await self._changes.rename(conversation, caller, title, inject())
        if record is None:
            raise NotFound(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")
        self._written(self._shards([conversation]))
        return record

    def _parse_members(self, values: list[str], what: str) -> list[uuid.UUID]:
        if len(values) > self._max_members:
            raise InvalidArgument(f"invalid_{what}", f"at most {self._max_members} members")
        return [parse_id(v, what) for v in values]

    async def _require_member(self, conversation: uuid.UUID, caller: uuid.UUID) -> Membership:
        membership = await self._store.membership(conversation, caller)
        if not membership.exists:
            raise NotFound(ErrorCode.CONVERSATION_NOT_FOUND, "no such conversation")
        if not membership.is_member:
            raise PermissionDenied(
                ErrorCode.NOT_A_MEMBER, "you are not a member of this conversation"
            )
        return membership

    async def presence(self, caller: uuid.UUID, user_ids: list[str]) -> list[PresenceRecord]:
        """Presence of the users the caller may see (self and co-members); others left out."""
        if not user_ids:
            raise InvalidArgument(ErrorCode.INVALID_USER_IDS, "user_ids must not be empty")
        if len(user_ids) > MAX_PRESENCE_USERS:
            raise InvalidArgument(
                ErrorCode.INVALID_USER_IDS, f"at most {MAX_PRESENCE_USERS} user_ids per request"
            )
        ids = [parse_id(u, "user_id") for u in user_ids]
        return await self._store.visible_presence(caller, ids)


def _new_message(
    caller: uuid.UUID,
    conversation_id: str,
    client_msg_id: str,
    content: str,
    trace_context: dict[str, str] | None,
) -> NewMessage:
    """A send checked for what needs no database; InvalidArgument otherwise."""
    conversation = parse_id(conversation_id, "conversation_id")
    _check_text(client_msg_id, "client_msg_id", MAX_CLIENT_MSG_ID_CHARS)
    _check_text(content, "content", MAX_CONTENT_CHARS)
    # The caller's trace context now (unless the send came with its own): the batch is written
    # from another task.
    trace = inject() if trace_context is None else trace_context
    return NewMessage(conversation, caller, client_msg_id, content, trace)


def _replay(earlier: MessageRecord, conversation: uuid.UUID, content: str) -> SendResult:
    """The earlier send's message as it is now. Once edited or deleted its content is no longer
    what was sent, so a retry is matched by conversation alone then."""
    changed = earlier.version > 1
    if earlier.conversation_id != conversation or (not changed and earlier.content != content):
        raise IdempotencyConflict(
            "client_msg_id was already used for a different message; use a new one"
        )
    return SendResult(earlier, created=False)
