"""Data quality: what the collectors refused and the processors dropped, per site.

``Rejections`` moves this process's refusal counts to the shared tally in the background and
reads them back together with what it has not handed over yet, so the panel never misses a
refusal while the tally is down. ``Quality`` is the one answer of ``GET /api/v1/quality`` and
of the live dashboard's quality panel: refusals (every collector's) plus processor drops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any, Protocol

from hitstream.services.collector import Collector
from hitstream.tally.base import Tally


class DropCounts(Protocol):
    """What quality needs of the store (the ``Store`` port fits)."""

    async def drop_counts(self, site_id: str | None = None) -> dict[str, int]: ...


class Rejections:
    def __init__(
        self, tally: Tally, collector: Collector | None = None, *, every_s: float = 0.5
    ) -> None:
        """``collector`` is this process's, or None in a process without the collector role
        (then only the tally has counts)."""
        self.tally = tally
        self.collector = collector
        self.every_s = every_s

    async def pump(self, stop: asyncio.Event) -> None:
        """Hand the collector's counts to the tally until ``stop`` (and once more after):
        what the tally cannot take now stays with the collector for next time."""
        while True:
            stopping = stop.is_set()
            await self.pump_once()
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    async def pump_once(self) -> None:
        if self.collector is None:
            return
        taken = self.collector.take_pending()
        if taken and not await self.tally.add(taken):
            self.collector.put_back(taken)

    async def read(self, site_id: str | None) -> dict[str, int]:
        """reason -> events/requests refused for a site, or for all (with the site-less ones):
        every collector's, through the tally, plus this process's not yet handed over."""
        found = Counter(await self.tally.read(site_id))
        pending = self.collector.pending if self.collector is not None else {}
        for (site, reason), count in pending.items():
            if site_id is None or site == site_id:
                found[reason] += count
        return dict(found)


class Quality:
    def __init__(self, rejections: Rejections, store: DropCounts) -> None:
        self.rejections = rejections
        self.store = store

    async def __call__(self, site_id: str | None) -> dict[str, Any]:
        rejected = await self.rejections.read(site_id)
        dropped = await self.store.drop_counts(site_id)
        return {"site_id": site_id, "rejected": rejected, "dropped": dropped}
