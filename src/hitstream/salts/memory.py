"""A salt keeper in memory only: each process (and each restart) draws its own salts."""

from __future__ import annotations

from hitstream.domain.visitors import Salts, day_key, new_salt, rotate
from hitstream.salts.base import SaltKeeper


class MemorySaltKeeper(SaltKeeper):
    name = "memory"

    def __init__(self) -> None:
        self._salts: Salts | None = None

    async def salts(self, now_ms: int) -> Salts:
        if self._salts is None or self._salts.day != day_key(now_ms):
            self._salts = rotate(self._salts, now_ms, new_salt())
        return self._salts
