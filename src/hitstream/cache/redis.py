"""A Redis cache shared by every web process: stats answers computed once, served by all.

Every Redis error is swallowed here (logged, counted as a miss) because the cache is an
optimisation: with Redis down, queries go to the store and still answer.
"""

from __future__ import annotations

import logging

from hitstream.cache.base import Cache
from hitstream.errors import AdapterUnavailable
from hitstream.redis_client import RedisClient

log = logging.getLogger(__name__)


class RedisCache(RedisClient, Cache):
    name = "redis"

    def __init__(
        self, url: str, *, prefix: str = "hitstream:cache:", timeout_s: float = 0.25
    ) -> None:
        super().__init__(url, prefix=prefix, timeout_s=timeout_s)
        self.errors = 0

    async def get(self, key: str) -> bytes | None:
        import redis

        try:
            value = await self._redis.get(self.prefix + key)
        except (redis.RedisError, OSError) as exc:
            self.errors += 1
            log.debug("cache get failed: %s", exc)
            return None
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        import redis

        try:
            await self._redis.set(self.prefix + key, value, ex=ttl_s)
        except (redis.RedisError, OSError) as exc:
            self.errors += 1
            log.debug("cache set failed: %s", exc)

    async def check(self) -> None:
        import redis

        try:
            await self._redis.ping()
        except (redis.RedisError, OSError) as exc:
            raise AdapterUnavailable(f"redis cache: {exc}") from exc
