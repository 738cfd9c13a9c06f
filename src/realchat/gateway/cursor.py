"""Where each conversation stands on one connection: the one owner of that state, Sans-I/O.

Events go in (a live event arrived, the client sent a message, a sync or a backfill started, a
backfilled message, a page ended, the first sync was handled); verdicts come out (deliver, drop
as duplicate or own echo, hold, remember, backfill). Nothing here awaits, writes or reads a
clock, so every interleaving can be unit-tested by calling the methods in that order; the
connection (`connection.py`) and the backfiller (`sync.py`) only act on the verdicts.

The rules, per conversation on a connection:
- `message` frames go out in increasing seq, each once. A live event that would leave a gap
  starts a backfill (history read) instead of going out.
- While a backfill owns a conversation, live events are only remembered (their highest seq); the
  backfill reads history until it has delivered at least that far and a page comes back short,
  then live delivery resumes: the check and the switch happen in one call, with no await.
- Before live delivery starts on a connection (its first `sync` handled, or a grace period
  passed without one: see `Connection`), live events are held, so that a sync's backfill is
  never overtaken by an event that came in before it.
"""

from __future__ import annotations

import enum

#: Bound on remembered own sends per conversation (a client sending faster than Kafka echoes).
MAX_PENDING_ECHOES = 64
#: Bound on changes (edits, deletes, renames) waiting for their message per conversation; past
#: it the oldest frame is dropped and only its seq kept (`MAX_STALE_SEQS` of them): that message
#: is then read from history, in its current state, instead of going out from its live event.
MAX_DEFERRED_CHANGES = 256
MAX_STALE_SEQS = 65_536


class Verdict(enum.Enum):
    """What to do with one message (live or backfilled) for one connection."""

    #: Write it now.
    DELIVER = "deliver"
    #: Already delivered on this connection: drop it.
    DUPLICATE = "duplicate"
    #: The client's own send, already answered with its `send_ok`: drop it.
    ECHO = "echo"
    #: Live delivery has not started on this connection: keep the frame until it does.
    HOLD = "hold"
    #: A backfill owns the conversation; it will read this message from history.
    REMEMBER = "remember"
    #: A gap before this message: a backfill must read what is missing (and this one) first.
    BACKFILL = "backfill"
    #: A change of a message not delivered yet: it waits on the cursor until that message is.
    DEFER = "defer"


class CursorState(enum.Enum):
    LIVE = "live"
    BACKFILLING = "backfilling"


#: Module constants for the per-delivery checks (an enum member is a class attribute lookup).
_DELIVER = Verdict.DELIVER
_BACKFILLING = CursorState.BACKFILLING


class IllegalTransitionError(RuntimeError):
    """An event the cursor cannot take in its current state: a bug in the caller."""


class ConversationCursor:
    """Delivery state of one conversation on one connection."""

    __slots__ = ("_deferred", "_echoes", "_stale", "delivered", "explicit", "seen", "state")

    def __init__(self) -> None:
        self.state = CursorState.LIVE
        #: Highest seq delivered contiguously; None until the first live event or a sync sets it.
        self.delivered: int | None = None
        #: Highest live seq remembered while backfilling: the backfill must reach it.
        self.seen = 0
        #: The running backfill is a client's sync (it re-sends the client's own messages too).
        self.explicit = False
        #: Seqs this client sent itself and already got in a send_ok (allocated on first use).
        self._echoes: set[int] | None = None
        #: Changes waiting for the message at their seq to be delivered, in arrival order.
        self._deferred: list[tuple[int, bytes]] | None = None
        #: Seqs whose change was dropped from `_deferred`: their live event is out of date.
        self._stale: set[int] | None = None

    @property
    def syncing(self) -> bool:
        return self.state is CursorState.BACKFILLING

    def on_live(self, seq: int) -> Verdict:
        if self.state is _BACKFILLING:
            self.seen = max(self.seen, seq)
            return Verdict.REMEMBER
        delivered = self.delivered
        if delivered is None or seq == delivered + 1:
            stale = self._stale
            if stale and seq in stale:  # changed since: read it from history instead
                self.delivered = seq - 1 if delivered is None else delivered
                self.state = CursorState.BACKFILLING
                self.seen = seq
                self.explicit = False
                return Verdict.BACKFILL
            self.delivered = seq
            echoes = self._echoes
            if echoes and seq in echoes:  # Kafka keeps order: everything before it was delivered
                echoes.discard(seq)
                return Verdict.ECHO
            return _DELIVER
        if seq <= delivered:
            return Verdict.DUPLICATE
        self.state = CursorState.BACKFILLING
        self.seen = seq
        self.explicit = False
        return Verdict.BACKFILL

    def on_change(self, seq: int, frame: bytes, *, of_message: bool) -> Verdict:
        """A change concerning position `seq`: an edited or deleted message's seq
        (`of_message`), or for a rename the conversation's last seq then. Changes travel on a
        topic of their own, so one may arrive before its message, and a backfill may be about
        to send the message as read before the change: DELIVER once the message went out on
        this connection, else DEFER (kept here; `release` gives it once `delivered` reaches
        `seq`). A message change on a connection that has not seen the conversation yet waits
        for its first message (a client syncs its conversations, which sets the position); a
        rename there goes out at once (nothing of the conversation to overtake)."""
        delivered = self.delivered
        if delivered is None:
            if not of_message:
                return _DELIVER
        elif seq <= delivered:
            return _DELIVER
        deferred = self._deferred
        if deferred is None:
            deferred = self._deferred = []
        if len(deferred) >= MAX_DEFERRED_CHANGES:
            dropped, _ = deferred.pop(0)
            stale = self._stale
            if stale is None:
                stale = self._stale = set()
            if len(stale) < MAX_STALE_SEQS:
                stale.add(dropped)
        deferred.append((seq, frame))
        return Verdict.DEFER

    @property
    def deferring(self) -> bool:
        return bool(self._deferred)

    def release(self) -> list[bytes]:
        """The deferred changes whose message has been delivered, in the order they came."""
        deferred = self._deferred
        if not deferred:
            return []
        delivered = self.delivered or 0
        ready = [frame for seq, frame in deferred if seq <= delivered]
        if ready:
            self._deferred = [(seq, frame) for seq, frame in deferred if seq > delivered]
        return ready

    def on_own_send(self, seq: int) -> None:
        """The client got this message in its send_ok, so its live echo need not go out.

        The cursor does not move: messages before it may still be on their way through Kafka,
        which delivers them before the echo."""
        if self.delivered is not None and seq <= self.delivered:
            return
        echoes = self._echoes
        if echoes is None:
            echoes = self._echoes = set()
        if len(echoes) >= MAX_PENDING_ECHOES:
            echoes.discard(min(echoes))
        echoes.add(seq)

    def on_sync(self, position: int) -> None:
        """The client asked for everything after `position`: a backfill from there begins."""
        if self.state is not CursorState.LIVE:
            raise IllegalTransitionError(f"sync while {self.state.value}: wait for the backfill")
        self.state = CursorState.BACKFILLING
        self.delivered = position
        self.seen = 0
        self.explicit = True

    def backfill_after(self) -> int:
        """The seq the next history page starts after."""
        return self.delivered or 0

    def on_backfilled(self, seq: int) -> Verdict:
        """A message of a history page: DELIVER if it is the next one (the cursor moves)."""
        if self.state is not CursorState.BACKFILLING:
            raise IllegalTransitionError(f"backfilled message while {self.state.value}")
        if seq != (self.delivered or 0) + 1:
            return Verdict.DUPLICATE
        self.delivered = seq
        stale = self._stale
        changed = stale is not None and seq in stale
        if stale is not None and changed:
            stale.discard(seq)
        echoes = self._echoes
        if echoes and seq in echoes:
            echoes.discard(seq)
            # A sync re-sends what the client asked for, own sends too; a message changed since
            # its send_ok goes out again in its current state.
            if not self.explicit and not changed:
                return Verdict.ECHO
        return Verdict.DELIVER

    def on_page_end(self, short: bool) -> bool:
        """A history page was handled; True if the backfill is done and live delivery resumed
        (the page was the last one and the live events remembered meanwhile are delivered)."""
        if self.state is not CursorState.BACKFILLING:
            raise IllegalTransitionError(f"page end while {self.state.value}")
        if short and (self.delivered or 0) >= self.seen:
            self.state = CursorState.LIVE
            return True
        return False

    def on_backfill_ended(self) -> None:
        """The backfill stopped early (failed, cancelled): back to live; the next live event
        finds the gap and starts a new one."""
        self.state = CursorState.LIVE


class Cursors:
    """The cursors of one connection, and whether live delivery has started on it."""

    __slots__ = ("_by_conversation", "live")

    def __init__(self, *, live: bool) -> None:
        self._by_conversation: dict[str, ConversationCursor] | None = None
        #: False until the first sync is handled (or its grace passed): live events are held.
        self.live = live

    def of(self, conversation_id: str) -> ConversationCursor:
        cursors = self._by_conversation
        if cursors is None:
            cursors = self._by_conversation = {}
        cursor = cursors.get(conversation_id)
        if cursor is None:
            cursor = cursors[conversation_id] = ConversationCursor()
        return cursor

    def on_live(self, conversation_id: str, seq: int) -> Verdict:
        if not self.live:
            return Verdict.HOLD
        # The common case (a cursor exists) without a call to `of`: this runs per delivery.
        cursors = self._by_conversation
        cursor = None if cursors is None else cursors.get(conversation_id)
        if cursor is None:
            cursor = self.of(conversation_id)
        return cursor.on_live(seq)

    def on_change(
        self, conversation_id: str, seq: int, frame: bytes, *, of_message: bool
    ) -> Verdict:
        if not self.live:
            return Verdict.HOLD
        return self.of(conversation_id).on_change(seq, frame, of_message=of_message)

    def start_live(self) -> bool:
        """Live delivery starts (events held so far are to be offered again, in order); False if
        it had started already."""
        if self.live:
            return False
        self.live = True
        return True
