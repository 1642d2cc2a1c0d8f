"""Salts shared in Redis, for several collectors, which must hash a visitor alike.

The first collector to need a day's salt creates it (``SET NX``, expiring an hour after the
next day ends); the others read it. If Redis is down when a collector needs a day's salt, it
uses a local salt for that day (logged), so ingestion never stops. Every ``recheck_ms`` (in
the background, never on a request's path) a collector compares its salts with Redis's:

- a salt it had **from Redis** is written back with ``SET NX``: a Redis back empty gets the
  salts the running collectors share (a collector started after it drew new ones, and every
  returning visitor counted again);
- a **local** salt gives way to Redis's as soon as Redis holds one; it is written to Redis only
  when Redis was found empty at two rechecks in a row, so that collectors holding the shared
  salt restore it first (a collector started during the outage must not switch everyone to
  its own).

Visitors split between two salts only while Redis was away. The driver is imported on first
use (Redis is an extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

from hitstream.domain.visitors import DAY_MS, Salts, day_key, new_salt
from hitstream.salts.base import SaltKeeper

log = logging.getLogger(__name__)

RECHECK_MS: Final = 30_000
"""How often a collector compares its salts with Redis's."""


class RedisSaltKeeper(SaltKeeper):
    name = "redis"

    def __init__(
        self, url: str, *, prefix: str = "hitstream:salt:", recheck_ms: int = RECHECK_MS
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.recheck_ms = recheck_ms
        self._redis: Any = None
        self._salts: Salts | None = None
        self._days: dict[str, bytes] = {}
        self._local: dict[str, int] = {}
        """Days whose salt was drawn here (Redis away): how many rechecks in a row found
        Redis empty for them."""
        self._checked_ms = 0
        self._checking: asyncio.Task[None] | None = None

    async def _shared(self, day: str, salt: bytes | None) -> bytes | None:
        """The day's salt in Redis, ``salt`` written first if Redis holds none (``None``:
        only read); raises the driver's error if Redis cannot be reached. A salt expires an
        hour after the next day ends, whenever it was written: no salt outlives yesterday."""
        import redis.asyncio as aioredis

        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self.url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        if salt is not None:
            ends = (int(day) + 2) * DAY_MS // 1000 + 3600
            ttl = max(60, ends - int(time.time()))
            await self._redis.set(self.prefix + day, salt, nx=True, ex=ttl)
        stored = await self._redis.get(self.prefix + day)
        return bytes(stored) if stored else None

    async def _day_salt(self, day: str) -> bytes:
        import redis

        if day in self._days:
            return self._days[day]
        fresh = new_salt()
        try:
            salt = await self._shared(day, fresh) or fresh
            self._local.pop(day, None)
        except (redis.RedisError, OSError) as exc:
            log.warning("shared salt unavailable (%s): using a local salt for day %s", exc, day)
            salt = fresh
            self._local[day] = 0
        self._days = {d: v for d, v in self._days.items() if int(d) >= int(day) - 1}
        self._days[day] = salt
        self._local = {d: n for d, n in self._local.items() if d in self._days}  # as bounded
        return salt

    async def salts(self, now_ms: int) -> Salts:
        today = day_key(now_ms)
        if self._salts is not None and self._salts.day == today:
            if now_ms - self._checked_ms >= self.recheck_ms and (
                self._checking is None or self._checking.done()
            ):
                self._checked_ms = now_ms
                self._checking = asyncio.create_task(self.recheck())
            return self._salts
        current = await self._day_salt(today)
        previous = await self._day_salt(str(int(today) - 1))
        self._salts = Salts(day=today, current=current, previous=previous)
        self._checked_ms = now_ms
        return self._salts

    async def recheck(self) -> None:
        """Write the salts in use back to Redis where it lost them, and take Redis's where
        they differ (see the module's text); nothing changes while Redis is away."""
        import redis

        salts = self._salts
        if salts is None:
            return
        found: dict[str, bytes] = {}
        try:
            for day, mine in (
                (salts.day, salts.current),
                (str(int(salts.day) - 1), salts.previous),
            ):
                empty_before = self._local.get(day)
                # a local salt is offered only once Redis was empty at the last recheck too
                offered = mine if empty_before is None or empty_before >= 1 else None
                stored = await self._shared(day, offered)
                if stored is None:
                    self._local[day] = (empty_before or 0) + 1
                    continue
                self._local.pop(day, None)  # Redis holds the day's salt: it is shared now
                if stored != mine:
                    found[day] = stored
        except (redis.RedisError, OSError):
            return  # still away: the local salts stay, the next recheck tries again
        except Exception:  # never let a background check die unseen
            log.exception("salt recheck failed")
            return
        if not found or self._salts is not salts:
            return
        for day in found:
            log.warning(
                "the shared salt of day %s differs from this collector's (drawn while Redis "
                "was away, or Redis came back empty): taking the shared one",
                day,
            )
        self._days.update(found)
        current = found.get(salts.day, salts.current)
        previous = found.get(str(int(salts.day) - 1), salts.previous)
        self._salts = Salts(day=salts.day, current=current, previous=previous)

    async def close(self) -> None:
        if self._checking is not None and not self._checking.done():
            self._checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checking
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
