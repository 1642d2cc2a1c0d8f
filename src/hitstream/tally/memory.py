"""The tally of one process (``serve``, or roles run together)."""

from __future__ import annotations

from collections import Counter

from hitstream.tally.base import Counts, Tally


class MemoryTally(Tally):
    name = "memory"

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    async def add(self, counts: Counts) -> bool:
        self._counts.update(counts)
        return True

    async def read(self, site_id: str | None) -> dict[str, int]:
        found: Counter[str] = Counter()
        for (site, reason), count in self._counts.items():
            if site_id is None or site == site_id:
                found[reason] += count
        return dict(found)
