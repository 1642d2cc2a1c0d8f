"""Keeper of the daily visitor salts: random, rotated at UTC midnight, older ones destroyed.

With a ``path`` the two live salts are kept in a file (mode 0600) in the data folder, so a
restart the same day keeps counting the same visitors as the same; the file never holds more
than today's and yesterday's salt. Without a path they live in memory only.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from hitstream.domain.visitors import Salts, rotate


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

    def salts(self, now_ms: int) -> Salts:
        """Today's and yesterday's salts at ``now_ms``, rotating (and persisting) on a new day."""
        current = self._salts
        rotated = rotate(current, now_ms, secrets.token_bytes(16))
        if rotated is not current:
            self._salts = rotated
            self._save(rotated)
        return rotated
