"""A tally in Redis: one hash per site (``<prefix><site_id>``: reason -> count), HINCRBY.

Shared by every collector and web process that points at the same Redis. Every Redis error is
logged and reported as "not counted" (``add``) or "nothing" (``read``): Redis down never
stops ingestion, the collector keeps its counts until Redis is back.
"""

from __future__ import annotations

import logging
from collections import Counter

from hitstream.redis_client import RedisClient
from hitstream.tally.base import Counts, Tally

log = logging.getLogger(__name__)


class RedisTally(RedisClient, Tally):
    name = "redis"

    def __init__(
        self, url: str, *, prefix: str = "hitstream:rejections:", timeout_s: float = 0.5
    ) -> None:
        super().__init__(url, prefix=prefix, timeout_s=timeout_s)

    async def add(self, counts: Counts) -> bool:
        import redis

        if not counts:
            return True
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for (site, reason), count in sorted(counts.items()):
                    pipe.hincrby(self.prefix + site, reason, count)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("redis tally: not counted now, kept for later: %s", exc)
            return False
        return True

    async def read(self, site_id: str | None) -> dict[str, int]:
        import redis

        found: Counter[str] = Counter()
        try:
            if site_id is None:
                keys = [key async for key in self._redis.scan_iter(match=self.prefix + "*")]
            else:
                keys = [self.prefix + site_id]  # not the site-less ones: admins only
            for key in dict.fromkeys(keys):
                for reason, count in (await self._redis.hgetall(key)).items():
                    found[reason.decode()] += int(count)
        except (redis.RedisError, OSError) as exc:
            log.warning("redis tally unreadable: %s", exc)
            return {}
        return dict(found)
