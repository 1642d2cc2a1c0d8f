"""What the small Redis adapters share: one ``redis.asyncio`` client with short timeouts.

Created in ``start`` (the driver is imported only then: Redis is an extra), closed in
``close``. Nothing connects before the first command; each adapter decides what an error
means for it (a miss, "not counted now" ...).
"""

from __future__ import annotations

from typing import Any


class RedisClient:
    def __init__(self, url: str, *, prefix: str, timeout_s: float) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._redis: Any = None

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
        )

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
