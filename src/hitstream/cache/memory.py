"""An in-process LRU cache: the default for one process."""

from __future__ import annotations

import time
from collections import OrderedDict

from hitstream.cache.base import Cache


class MemoryCache(Cache):
    name = "memory"

    def __init__(self, entries: int = 2048) -> None:
        self.entries = entries
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if self.entries <= 0:
            return
        self._items[key] = (time.monotonic() + ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)
