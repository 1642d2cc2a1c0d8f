"""The cache port: bytes by key, best effort.

A cache never decides an answer: keys carry the site's data version, so an entry is either
exactly right or never asked for again. A cache that is down behaves as empty (every lookup
misses, every store is skipped): queries get slower, never wrong, never failing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class Cache(ABC):
    name: str = "cache"

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...

    async def check(self) -> None:
        """Raise ``AdapterUnavailable`` when the cache cannot be reached (readiness only)."""
