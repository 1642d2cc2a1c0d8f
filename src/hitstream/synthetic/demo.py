"""Demo mode: a generated history, then a trickle of live visits, through the real collector.

``hitstream serve --demo`` fills an empty demo site with 60 days of synthetic traffic (once:
a restart keeps what is there) and then keeps sending new visits, so a first look at the
dashboard shows a full, moving picture. Every event goes through the collector and the event
log like real traffic; only the timestamp window is widened for the backfill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Sequence

import msgspec

from hitstream.domain import access
from hitstream.domain.events import Limits
from hitstream.services.collector import Collector
from hitstream.stores.base import Store
from hitstream.synthetic.traffic import TrafficModel, WireEvent

log = logging.getLogger(__name__)
HISTORY_DAYS = 60
MAX_GAP_S = 60.0
"""The longest wait between two live events (a quiet hour's)."""
_ENCODE = msgspec.json.encode


def _now() -> int:
    return int(time.time() * 1000)


class Demo:
    def __init__(
        self,
        collector: Collector,
        store: Store,
        site_id: str = "demo.example",
        *,
        events_per_day: int = 3000,
        live_events_per_day: int = 0,
        seed: int = 7,
    ) -> None:
        """Live visits go on at the history's rate (``events_per_day``, the weekly mean, in
        its daily rhythm), so that today compares with the days before it;
        ``live_events_per_day`` (not 0) sets another."""
        self.live_events_per_day = live_events_per_day or events_per_day
        self.site_id = site_id
        self.store = store
        self._pause = random.Random(seed + 1)
        self.events_per_day = events_per_day
        self.model = TrafficModel(site_id, random.Random(seed), engagement=True)
        widened = Limits(
            max_past_ms=(HISTORY_DAYS + 1) * 86_400_000,
            max_future_ms=collector.limits.max_future_ms,
        )
        # the same log, salts, sites and counters; only the accepted timestamp window is wider
        self.backfill_collector = collector.widened(widened)
        self.collector = collector
        self.sender = access.key("demo", site_id, "write")
        """The demo sends like a server-side integration with a write key of its site: its
        synthetic visitors' IPs and browsers are its to set, and no per-IP limit applies."""

    async def _send(self, collector: Collector, events: Iterable[WireEvent]) -> int:
        accepted = 0
        calls = [
            collector.collect(
                _ENCODE(e.body), "application/json", e.ip, e.user_agent, principal=self.sender
            )
            for e in events
        ]
        for result in await asyncio.gather(*calls):
            accepted += len(result.ids)
        return accepted

    async def backfill(self) -> int:
        """Send the history unless the site already has events; return events sent."""
        if await self.store.count_events(self.site_id) > 0:
            return 0
        began = time.perf_counter()
        history = self.model.history(HISTORY_DAYS, self.events_per_day, _now())
        sent = 0
        chunk: list[WireEvent] = []
        for event in history:
            chunk.append(event)
            if len(chunk) == 500:  # one group commit of the event log per chunk
                sent += await self._send(self.backfill_collector, chunk)
                chunk = []
        sent += await self._send(self.backfill_collector, chunk)
        log.info("demo: %d events of history sent in %.1fs", sent, time.perf_counter() - began)
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """Backfill, then send events at the history's rate (``TrafficModel.rate``, random
        gaps) until ``stop``."""
        try:
            await self.backfill()
            while not stop.is_set():
                batch: Sequence[WireEvent] = self.model.next_events(_now(), 1)
                await self._send(self.collector, batch)
                gap = self._pause.expovariate(self.model.rate(self.live_events_per_day, _now()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=min(gap, MAX_GAP_S))
        except Exception:  # the demo must never take the server down
            log.exception("demo traffic stopped")
