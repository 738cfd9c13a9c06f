"""Who is typing where, by the contract's expiry rule: a `typing` true holds for
`TYPING_EXPIRY_S` unless repeated, a `typing` false ends it at once. Pure: the clock is passed
in, so an application (or a test) decides when to look."""

from __future__ import annotations

from realchat.contract.frames import TYPING_EXPIRY_S, UserTypingFrame


class TypingTracker:
    def __init__(self, expiry_s: float = TYPING_EXPIRY_S) -> None:
        self._expiry_s = expiry_s
        #: When each (conversation, user)'s typing ends unless repeated.
        self._until: dict[tuple[str, str], float] = {}

    def seen(self, frame: UserTypingFrame, now: float) -> None:
        key = (frame.conversation_id, frame.user_id)
        if frame.typing:
            self._until[key] = now + self._expiry_s
        else:
            self._until.pop(key, None)

    def stopped(self, conversation_id: str, user_id: str) -> None:
        """The user's message arrived: whatever they typed is sent."""
        self._until.pop((conversation_id, user_id), None)

    def typing(self, conversation_id: str, now: float) -> list[str]:
        """The users typing in a conversation now, sorted; expired entries are dropped."""
        self._until = {k: t for k, t in self._until.items() if t > now}
        return sorted(user for (c, user) in self._until if c == conversation_id)
