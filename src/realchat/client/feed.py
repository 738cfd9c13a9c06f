"""A buffer the application drains with `async for`, ending (or raising the client's failure)
once the client stops: the SDK's messages and its events are each one."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Feed(Generic[T]):
    def __init__(self, maxlen: int | None = None) -> None:
        """`maxlen`: the oldest item is dropped (and counted) to make room for a new one."""
        self._items: deque[T] = deque(maxlen=maxlen)
        self._changed = asyncio.Event()
        self._closed = False
        self._failure: BaseException | None = None
        #: Items dropped because nobody read them fast enough.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        """What is buffered, oldest first (not taken out)."""
        return iter(self._items)

    def put(self, item: T) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(item)
        self._changed.set()

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.put(item)

    def close(self, failure: BaseException | None) -> None:
        """No more items: readers get what is buffered, then the end (or `failure`)."""
        self._closed = True
        self._failure = failure
        self._changed.set()

    async def drain(self) -> AsyncIterator[T]:
        while True:
            while not self._items:
                if self._closed:
                    if self._failure is not None:
                        raise self._failure
                    return
                self._changed.clear()
                await self._changed.wait()
            yield self._items.popleft()
