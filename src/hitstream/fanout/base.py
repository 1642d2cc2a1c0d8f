"""The fan-out port: publish a message on a channel; every subscriber of it gets a copy.

A subscriber's queue is bounded and drops its OLDEST message when full, so a slow dashboard
can never slow a publisher (the processor) down. Drops are counted on the subscription.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator


class Subscription:
    """A bounded queue of messages for one subscriber; iterate it, then ``close`` it."""

    def __init__(self, channel: str, maxsize: int) -> None:
        self.channel = channel
        self.dropped = 0
        self._items: deque[bytes] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, message: bytes) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(message)
        self._ready.set()

    async def get(self) -> bytes:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def __len__(self) -> int:
        """Messages queued and not taken yet."""
        return len(self._items)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        return await self.get()


class Fanout(ABC):
    name: str = "fanout"

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @abstractmethod
    async def publish(self, channel: str, message: bytes) -> None:
        """Send to every current subscriber; never blocks on a slow one."""

    @abstractmethod
    async def subscribe(self, channel: str, maxsize: int = 256) -> Subscription: ...

    @abstractmethod
    async def unsubscribe(self, subscription: Subscription) -> None: ...

    async def check(self) -> None:
        """Raise ``FanoutUnavailable`` if messages cannot be delivered right now."""
