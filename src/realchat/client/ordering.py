"""Per-conversation delivery order on the client: dedup, hold-back, gap detection.

Pure: no I/O and no clock of its own (every call that needs the time takes `now`, in seconds of
any monotonic clock), so it can be tested exhaustively without a network or sleeps.

What it guarantees, per conversation, for the messages it is given (`accept`):

- each `(conversation_id, seq)` is released at most once (later copies are duplicates);
- releases are in increasing `seq` with no gaps: a message is released only right after its
  predecessor, starting from the conversation's starting position (see below). A message that
  arrives ahead of a gap is held back until the gap is filled;
- memory is bounded: at most `hold_back_cap` messages are held per conversation. When a message
  would exceed the cap, the held messages with the highest seqs are dropped (never released) and
  a sync is asked for at once: the server sends everything after the position again.

Starting positions. A conversation's position is the highest seq released so far (everything at
or below it counts as had). It starts:

- at the position given to the constructor or `start_at` (e.g. restored from storage, or 0 for a
  conversation the client just created);
- during a *baseline* (a plain `sync` from the server's acknowledged cursors: from the start
  when no positions were given, until `end_baseline`), a conversation first seen in that time
  has no position yet: its messages are held until `end_baseline` sets it to just below the
  lowest seq received (or to the position the server reported, if lower);
- otherwise at 0: a conversation first seen mid-stream (seq > 1) asks for a sync from 0 at once.

Gaps. While messages are held, the conversation is due for a sync `gap_timeout_s` after the gap
opened (or after the position last moved); `due_syncs` returns the positions to ask the server
for and re-arms the timer, so a gap that persists is asked for again each `gap_timeout_s`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from realchat.contract.frames import Message


@dataclass
class _Conversation:
    #: Highest seq released (everything at or below it counts as had); None: not known yet.
    position: int | None
    #: Messages above the position, waiting for the gap below them to be filled.
    held: dict[int, Message] = field(default_factory=dict)
    #: When to ask the server for the gap (a sync from `position`); None: nothing to ask.
    sync_due: float | None = None
    #: A sync for this conversation was asked for and its `sync_done` has not come yet.
    sync_outstanding: bool = False


class Ordering:
    def __init__(
        self,
        *,
        gap_timeout_s: float = 2.0,
        hold_back_cap: int = 1000,
        positions: Mapping[str, int] | None = None,
    ) -> None:
        """`positions`: where the application already is in each conversation. None means it
        knows nothing yet, and the first sync should be a baseline (`needs_baseline`)."""
        if hold_back_cap < 1:
            raise ValueError("hold_back_cap must be at least 1")
        self._gap_timeout_s = gap_timeout_s
        self._cap = hold_back_cap
        self._conversations: dict[str, _Conversation] = {
            cid: _Conversation(seq) for cid, seq in (positions or {}).items()
        }
        #: Conversations that hold messages (the only ones a gap timer can be running for).
        self._gapped: set[str] = set()
        self._needs_baseline = positions is None
        #: Until the first baseline is done, any conversation first seen waits for it.
        self._baselining = positions is None
        #: Copies of messages already had (or held) that were ignored.
        self.duplicates = 0
        #: Held messages dropped because a conversation's hold-back buffer was full.
        self.dropped = 0
        #: Messages held back so far (arrived ahead of a gap, or before their baseline).
        self.held_total = 0

    # -- what the client has -----------------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        """The highest contiguous seq per conversation whose position is known."""
        return {
            cid: conv.position
            for cid, conv in self._conversations.items()
            if conv.position is not None
        }

    def position(self, conversation_id: str) -> int | None:
        conv = self._conversations.get(conversation_id)
        return None if conv is None else conv.position

    def held(self, conversation_id: str) -> list[int]:
        """Seqs held back in a conversation, ascending."""
        conv = self._conversations.get(conversation_id)
        return [] if conv is None else sorted(conv.held)

    @property
    def needs_baseline(self) -> bool:
        """True until a baseline (plain sync) completed, when no positions were given."""
        return self._needs_baseline

    # -- input ---------------------------------------------------------------------------------

    def start_at(self, conversation_id: str, position: int, now: float) -> list[Message]:
        """Set where a conversation starts, if its position is not known yet (a known position is
        never moved). Returns the held messages this releases."""
        conv = self._conversations.get(conversation_id)
        if conv is None:
            self._conversations[conversation_id] = _Conversation(position)
            return []
        if conv.position is not None:
            return []
        return self._settle(conversation_id, conv, position, now)

    def accept(self, message: Message, now: float) -> list[Message]:
        """A message from the server (`message` frame, or the message of a `send_ok`). Returns
        the messages this releases, in order: none, or this one and any it unblocks."""
        cid, seq = message.conversation_id, message.seq
        conv = self._conversations.get(cid)
        first_sight = conv is None
        if conv is None:
            conv = self._conversations[cid] = _Conversation(None if self._baselining else 0)
        if seq in conv.held or (conv.position is not None and seq <= conv.position):
            self.duplicates += 1
            held = conv.held.get(seq)
            if held is not None and held.version < message.version:
                conv.held[seq] = message  # edited meanwhile: release the current state
            return []
        if conv.position is None:  # the baseline's sync_done will say where it starts
            self._hold(cid, conv, message, now)
            return []
        if seq == conv.position + 1:
            conv.position = seq
            released = [message, *self._release(cid, conv)]
            # Progress restarts the gap timer: the gap is being filled.
            conv.sync_due = now + self._gap_timeout_s if conv.held else None
            return released
        gap_was_open = bool(conv.held)
        self._hold(cid, conv, message, now)
        if first_sight:
            conv.sync_due = now  # seen mid-stream: nothing else would send its beginning
        elif not gap_was_open:
            conv.sync_due = now + self._gap_timeout_s
        return []

    def begin_baseline(self) -> None:
        """A plain sync (from the server's acknowledged cursors) is about to be sent: a
        conversation first seen from now on waits for `end_baseline` to learn its start."""
        self._baselining = True

    def end_baseline(self, done: Mapping[str, int], now: float) -> list[Message]:
        """The baseline's `sync_done` (`positions`: the last seq the server delivered in each
        conversation). Every conversation gets a position; returns what that releases."""
        self._baselining = False
        self._needs_baseline = False
        released: list[Message] = []
        for cid, conv in list(self._conversations.items()):
            if conv.position is not None:
                continue
            starts = [min(conv.held) - 1] if conv.held else []
            if cid in done:
                starts.append(done[cid])
            released += self._settle(cid, conv, min(starts, default=0), now)
        self._note_sync_done(done, now)
        return released

    def sync_done(self, done: Mapping[str, int], now: float) -> None:
        """A `sync_done` of a sync with explicit positions: its syncs are no longer outstanding.
        (Its messages came before it, as `message` frames.)"""
        self._note_sync_done(done, now)

    # -- gap timer ------------------------------------------------------------------------------

    def due_syncs(self, now: float) -> dict[str, int]:
        """The conversations whose gap is due to be asked for, with the position to sync from.
        Marks them as asked for and re-arms their timers."""
        due: dict[str, int] = {}
        for cid in self._gapped:
            conv = self._conversations[cid]
            if conv.position is None or conv.sync_due is None or conv.sync_due > now:
                continue
            due[cid] = conv.position
            conv.sync_outstanding = True
            conv.sync_due = now + self._gap_timeout_s
        return due

    def next_due(self) -> float | None:
        """When the next gap becomes due (None: no gap timer runs)."""
        times = [
            conv.sync_due
            for cid in self._gapped
            if (conv := self._conversations[cid]).position is not None and conv.sync_due is not None
        ]
        return min(times, default=None)

    # -- internals ------------------------------------------------------------------------------

    def _hold(self, cid: str, conv: _Conversation, message: Message, now: float) -> None:
        if len(conv.held) >= self._cap:
            self.dropped += 1
            highest = max(conv.held)
            if conv.position is not None and not conv.sync_outstanding:
                conv.sync_due = now  # what is dropped must come again: ask at once
            if message.seq > highest:
                return
            del conv.held[highest]
        conv.held[message.seq] = message
        self.held_total += 1
        self._gapped.add(cid)

    def _release(self, cid: str, conv: _Conversation) -> list[Message]:
        assert conv.position is not None
        released: list[Message] = []
        while (following := conv.held.pop(conv.position + 1, None)) is not None:
            released.append(following)
            conv.position = following.seq
        if not conv.held:
            self._gapped.discard(cid)
        return released

    def _settle(self, cid: str, conv: _Conversation, position: int, now: float) -> list[Message]:
        """Give a conversation waiting for its start the position `position`."""
        conv.position = position
        for seq in [s for s in conv.held if s <= position]:
            del conv.held[seq]
        released = self._release(cid, conv)
        conv.sync_due = now + self._gap_timeout_s if conv.held else None
        return released

    def _note_sync_done(self, done: Mapping[str, int], now: float) -> None:
        for cid, seq in done.items():
            conv = self._conversations.get(cid)
            if conv is None:
                self._conversations[cid] = _Conversation(seq)
                continue
            conv.sync_outstanding = False
            if conv.held and conv.position is not None:
                # The server delivered all it had after our position and the gap is still
                # there (messages dropped at the cap): ask again after the gap timeout.
                conv.sync_due = now + self._gap_timeout_s
