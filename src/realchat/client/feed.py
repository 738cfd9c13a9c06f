"""What the application reads from a client (`messages()`, `events()`): a queue it iterates with
`async for`, in order, until the client finishes; then what is left is still read, and the
failure that ended the client, if any, is raised."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Feed(Generic[T]):
    def __init__(self, maxlen: int | None = None) -> None:
        """`maxlen`: past it the oldest item goes (counted in `dropped`); None: unbounded (the
        caller bounds it)."""
        self._items: deque[T] = deque(maxlen=maxlen)
        self._changed = asyncio.Event()
        self._finished = False
        self._failure: BaseException | None = None
        #: Items pushed out unread by newer ones.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        """The items waiting, oldest first (nothing is taken)."""
        return iter(self._items)

    def put(self, item: T) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._changed.set()

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.put(item)

    def finish(self, failure: BaseException | None) -> None:
        self._finished = True
        self._failure = failure
        self._changed.set()

    async def items(self) -> AsyncIterator[T]:
        while True:
            while not self._items:
                if self._finished:
                    if self._failure is not None:
                        raise self._failure
                    return
                self._changed.clear()
                await self._changed.wait()
            yield self._items.popleft()
