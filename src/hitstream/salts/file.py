"""Salts in a file of the data folder (mode 0600): the embedded default.

A restart on the same day keeps counting the same visitors as the same, because the two live
salts survive it; the file never holds more than today's and yesterday's salt (it is replaced
atomically, fsynced, on every rotation). An unreadable file is treated as absent: new salts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hitstream.domain.visitors import Salts, day_key, new_salt, rotate
from hitstream.salts.base import SaltKeeper


class FileSaltKeeper(SaltKeeper):
    name = "file"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._salts: Salts | None = self._load()

    def _load(self) -> Salts | None:
        if not self._path.exists():
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
        if current is not None and current.day == day_key(now_ms):
            return current  # the hot path: no random draw unless the day changed
        rotated = rotate(current, now_ms, new_salt())
        if rotated is not current:
            self._salts = rotated
            self._save(rotated)
        return rotated
