"""Keepers of the daily visitor salts: random, rotated at UTC midnight, older ones destroyed.

``SaltKeeper``: with a ``path`` the two live salts are kept in a file (mode 0600) in the data
folder, so a restart the same day keeps counting the same visitors as the same; the file never
holds more than today's and yesterday's salt. Without a path they live in memory only.

``RedisSaltKeeper``: for several collectors, which must hash a visitor alike. The first
collector to need a day's salt creates it (``SET NX``, expiring after two days); the others
read it. If Redis is down at a day change, the collector uses a local salt for that day
(logged): visitors may split across collectors that day, but ingestion never stops.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from hitstream.domain.visitors import DAY_MS, Salts, day_key, rotate

log = logging.getLogger(__name__)


class SaltKeeper:
    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._salts: Salts | None = self._load()

    def _load(self) -> Salts | None:
        if self._path is None or not self._path.exists():
            return None
        try:
            raw = json.loads(self._path.read_text())
            return Salts(
                day=str(raw["day"]),
                current=bytes.fromhex(raw["current"]),
                previous=bytes.fromhex(raw["previous"]),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def _save(self, salts: Salts) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        payload = {
            "day": salts.day,
            "current": salts.current.hex(),
            "previous": salts.previous.hex(),
        }
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)

    async def salts(self, now_ms: int) -> Salts:
        """Today's and yesterday's salts at ``now_ms``, rotating (and persisting) on a new day."""
        current = self._salts
        rotated = rotate(current, now_ms, secrets.token_bytes(16))
        if rotated is not current:
            self._salts = rotated
            self._save(rotated)
        return rotated

    async def close(self) -> None:
        return None


class RedisSaltKeeper(SaltKeeper):
    def __init__(self, url: str, *, prefix: str = "hitstream:salt:") -> None:
        super().__init__(None)
        self.url = url
        self.prefix = prefix
        self._redis: Any = None
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
        fresh = secrets.token_bytes(16)
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
