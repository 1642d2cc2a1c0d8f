"""Fan-out inside one process: the default for ``hitstream serve``."""

from __future__ import annotations

from collections import defaultdict

from hitstream.fanout.base import Fanout, Subscription


class MemoryFanout(Fanout):
    name = "memory"

    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)

    async def publish(self, channel: str, message: bytes) -> None:
        for subscription in tuple(self._subscribers.get(channel, ())):
            subscription.put(message)

    async def subscribe(self, channel: str, maxsize: int = 256) -> Subscription:
        subscription = Subscription(channel, maxsize)
        self._subscribers[channel].add(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        subscribers = self._subscribers.get(subscription.channel)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.channel]

    async def close(self) -> None:
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.close()
        self._subscribers.clear()
