"""Fan-out over Redis pub/sub: a dashboard on any web process sees any processor's updates.

One pub/sub connection per process carries every channel its local subscribers want; a reader
task hands each message to the local bounded subscriptions (which drop their oldest when a
client is slow). If Redis goes away, publishing raises ``FanoutUnavailable`` quickly (the
processor logs it and goes on: ingestion never waits for dashboards) and the reader reconnects
with backoff and subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from hitstream.errors import FanoutUnavailable
from hitstream.fanout.base import Fanout, Subscription

log = logging.getLogger(__name__)


class RedisFanout(Fanout):
    name = "redis"

    def __init__(
        self, url: str, *, prefix: str = "hitstream:live:", timeout_s: float = 0.5
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._redis: Any = None
        self._sub_redis: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._local: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._lock = asyncio.Lock()
        self.connected = asyncio.Event()

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
        )
        # the subscriber waits for messages, so its reads must not time out; health checks
        # (PING every 10 s) notice a dead connection instead
        self._sub_redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=self.timeout_s, health_check_interval=10
        )
        self._reader = asyncio.create_task(self._read_forever())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for subscribers in self._local.values():
            for subscription in subscribers:
                subscription.close()
        self._local.clear()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        for client in (self._redis, self._sub_redis):
            if client is not None:
                await client.aclose()

    async def publish(self, channel: str, message: bytes) -> None:
        import redis

        try:
            await self._redis.publish(self.prefix + channel, message)
        except (redis.RedisError, OSError) as exc:
            raise FanoutUnavailable(f"redis publish failed: {exc}") from exc

    async def subscribe(self, channel: str, maxsize: int = 256) -> Subscription:
        subscription = Subscription(channel, maxsize)
        async with self._lock:
            first = not self._local[channel]
            self._local[channel].add(subscription)
            if first and self._pubsub is not None and self.connected.is_set():
                with contextlib.suppress(Exception):  # the reader resubscribes on reconnect
                    await self._pubsub.subscribe(self.prefix + channel)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        async with self._lock:
            subscribers = self._local.get(subscription.channel)
            if subscribers is None:
                return
            subscribers.discard(subscription)
            if not subscribers:
                del self._local[subscription.channel]
                if self._pubsub is not None and self.connected.is_set():
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(self.prefix + subscription.channel)

    async def check(self) -> None:
        import redis

        try:
            await self._redis.ping()
        except (redis.RedisError, OSError) as exc:
            raise FanoutUnavailable(f"redis: {exc}") from exc

    async def _read_forever(self) -> None:
        import redis

        delay = 0.1
        while True:
            try:
                await self._read_once()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("redis fan-out disconnected (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _read_once(self) -> None:
        pubsub = self._sub_redis.pubsub(ignore_subscribe_messages=True)
        try:
            # a placeholder channel keeps the connection in subscribe mode with no dashboards
            await pubsub.subscribe(self.prefix + "_")
            async with self._lock:
                channels = [self.prefix + c for c in self._local]
            if channels:
                await pubsub.subscribe(*channels)
            self._pubsub = pubsub
            self.connected.set()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"].decode()[len(self.prefix) :]
                for subscription in tuple(self._local.get(channel, ())):
                    subscription.put(bytes(message["data"]))
        finally:
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()
