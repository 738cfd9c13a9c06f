"""Each conversation's change counter, for the catch-up on edits and deletes after being away.

Pure: the session feeds it what `sync_done` frames told and asks it what to name in a sync. A
sync naming a conversation's counter gets every message at or before its position changed since
(docs/protocol.md, "Catching up after being away"); a sync without it moves the counter past
changes whose live frame was lost (a fault cut the connection or the bus) without sending them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class ChangeCounters:
    def __init__(self) -> None:
        #: The counter each `sync_done` told last, per conversation.
        self._told: dict[str, int] = {}
        #: Conversations the baseline started mid-way (first seen live during it, absent from
        #: its `sync_done`) before any counter was told: nothing at or before their position
        #: was had, so no catch-up on it is asked for.
        self._uncounted: set[str] = set()

    def told(self, changes: Mapping[str, int] | None) -> None:
        """A `sync_done`'s counters."""
        self._told.update(changes or {})

    def baseline_ended(self, held: Iterable[str]) -> None:
        """The baseline's `sync_done` was handled (after `told`); `held`: every conversation
        with a position now."""
        self._uncounted.update(c for c in held if c not in self._told)

    def for_sync(self, positions: Iterable[str]) -> dict[str, int] | None:
        """The counters to name in a sync of these conversations. One held from its first
        message with no counter told yet (first seen live, or restored by the application)
        names 0: every change of what it holds. Without it, a device that learnt a
        conversation live, then missed an edit while away, was given the current counter by
        its next sync and never got that edit (`realchat chaos` found it)."""
        counters: dict[str, int] = {}
        for conversation_id in positions:
            known = self._told.get(conversation_id)
            if known is not None:
                counters[conversation_id] = known
            elif conversation_id not in self._uncounted:
                counters[conversation_id] = 0
        return counters or None
