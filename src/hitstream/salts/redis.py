"""Salts shared in Redis, for several collectors, which must hash a visitor alike.

The first collector to need a day's salt creates it (``SET NX``, expiring after two days);
the others read it. If Redis is down at a day change, the collector uses a local salt for
that day (logged): visitors may split across collectors that day, but ingestion never stops.
The driver is imported on first use (Redis is an extra).
"""

from __future__ import annotations

import logging
from typing import Any

from hitstream.domain.visitors import DAY_MS, Salts, day_key, new_salt
from hitstream.salts.base import SaltKeeper

log = logging.getLogger(__name__)


class RedisSaltKeeper(SaltKeeper):
    name = "redis"

    def __init__(self, url: str, *, prefix: str = "hitstream:salt:") -> None:
        self.url = url
        self.prefix = prefix
        self._redis: Any = None
        self._salts: Salts | None = None
        self._days: dict[str, bytes] = {}

    async def _day_salt(self, day: str) -> bytes:
        import redis
        import redis.asyncio as aioredis

        if day in self._days:
            return self._days[day]
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self.url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        fresh = new_salt()
        try:
            await self._redis.set(self.prefix + day, fresh, nx=True, ex=2 * DAY_MS // 1000 + 3600)
            stored = await self._redis.get(self.prefix + day)
            salt = bytes(stored) if stored else fresh
        except (redis.RedisError, OSError) as exc:
            log.warning("shared salt unavailable (%s): using a local salt for day %s", exc, day)
            salt = fresh
        self._days = {d: v for d, v in self._days.items() if int(d) >= int(day) - 1}
        self._days[day] = salt
        return salt

    async def salts(self, now_ms: int) -> Salts:
        today = day_key(now_ms)
        if self._salts is not None and self._salts.day == today:
            return self._salts
        current = await self._day_salt(today)
        previous = await self._day_salt(str(int(today) - 1))
        self._salts = Salts(day=today, current=current, previous=previous)
        return self._salts

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
