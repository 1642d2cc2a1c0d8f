"""The processor: log -> pipeline -> sessions -> ONE store transaction -> log commit -> live.

Effectively-once: the store transaction holds the batch's events, the visits they changed AND
the log positions after the batch. After a crash the processor starts from the positions in
the store (not the log's own commit, which may lag or lead), and reloads open visits from the
store, so every event is stored once and every visit counted once. Event ids stored already
(a client retrying with the same ``event_id``) are dropped as ``duplicate``.

If the store is down, the same computed batch is retried with backoff: the processor never
skips ahead, and its in-memory visit state never runs ahead of what it will write. A batch
that was polled but not yet stored (the dedupe lookup, a dead letter or the visit reload
failed) is held and taken up again by the next ``process_once`` instead of a new poll, so a
failure anywhere between poll and store leaves the position where it was.

Fencing: each batch carries the offset it starts at per partition, and the store refuses it
(``PositionConflict``) if another processor already stored past that point, as happens when a
partition moves during a rebalance. The processor then drops its visit state, rejoins, and
resumes from the store: two processors never both count the same messages into a visit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import msgspec

from hitstream.domain.events import AcceptedEvent, ProcessedEvent, Session
from hitstream.domain.sessions import Sessionizer
from hitstream.errors import AdapterUnavailable, PositionConflict, StoreUnavailable
from hitstream.fanout.base import Fanout
from hitstream.log.base import EventLog, LogConsumer, LogMessage
from hitstream.metrics import Metrics
from hitstream.services.pipeline import PipelineRunner
from hitstream.stores.base import Store, WriteBatch

log = logging.getLogger(__name__)
_DECODER = msgspec.json.Decoder(AcceptedEvent)
_ENCODER = msgspec.json.Encoder()
LIVE_EVENTS_PER_MESSAGE = 100
_LIVE_FIELDS = (
    "event_id",
    "type",
    "name",
    "path",
    "title",
    "source",
    "channel",
    "referrer_domain",
    "country",
    "browser",
    "os",
    "device",
    "props",
    "timestamp",
    "received_at",
)


def live_message(
    site_id: str, version: int, events: list[ProcessedEvent], dropped: dict[str, int], now: int
) -> bytes:
    shown = events[-LIVE_EVENTS_PER_MESSAGE:]
    return _ENCODER.encode(
        {
            "type": "processed",
            "site_id": site_id,
            "data_version": version,
            "processed_at": now,
            "events_total": len(events),
            "events": [{name: getattr(e, name) for name in _LIVE_FIELDS} for e in shown],
            "dropped": dropped,
        }
    )


class Processor:
    def __init__(
        self,
        log: EventLog,
        store: Store,
        fanout: Fanout,
        runner: PipelineRunner,
        metrics: Metrics,
        *,
        stream: str,
        group: str = "processor",
        batch_max: int = 5000,
        poll_timeout: float = 0.2,
        session_timeout_ms: int = 30 * 60 * 1000,
        retention_ms: int = 0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.log = log
        self.store = store
        self.fanout = fanout
        self.runner = runner
        self.metrics = metrics
        self.stream = stream
        self.group = group
        self.batch_max = batch_max
        self.poll_timeout = poll_timeout
        self.retention_ms = retention_ms
        self.sessions = Sessionizer(session_timeout_ms)
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._consumer: LogConsumer | None = None
        self._held: list[LogMessage] = []
        """Polled but not stored yet: retried before anything new is polled."""
        self._generation = 0
        self._last_housekeeping = 0
        self._last_lag = 0.0
        self.processed = 0
        self.batches = 0
        self.caught_up = asyncio.Event()

    async def start(self, consumer: LogConsumer | None = None) -> None:
        """Begin consuming: from the store's positions, or from ``consumer`` (replay)."""
        await self._reload_sessions()
        self._consumer = consumer or self.log.consumer(self.group, self._stored_position)
        self._generation = self._consumer.generation

    async def _stored_position(self, partition: int) -> int | None:
        """Read fresh at every assignment: after a rebalance another processor may have
        moved a partition on since this one last saw it."""
        return (await self.store.positions(self.stream)).get(partition)

    async def _resync(self) -> None:
        """Forget this batch and the visit state, rejoin, and resume from the store."""
        self._held = []
        if self._consumer is not None:
            await self._consumer.close()
        await self._reload_sessions()
        self._consumer = self.log.consumer(self.group, self._stored_position)
        self._generation = self._consumer.generation

    async def _reload_sessions(self) -> None:
        self.sessions = Sessionizer(self.sessions.timeout_ms)
        now = self._clock()
        self.sessions.load(await self.store.open_sessions(now - 2 * self.sessions.timeout_ms))

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.close()
            self._consumer = None

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set, then drain what the log holds, then return."""
        while not stop.is_set():
            try:
                count = await self.process_once()
            except AdapterUnavailable as exc:
                log.warning("processor paused: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if count == 0:
                self.caught_up.set()
        await self.drain()

    async def drain(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.process_once(poll_timeout=0.0) == 0:
                return

    async def process_once(self, poll_timeout: float | None = None) -> int:
        """Read one batch and store it; return how many log messages it covered."""
        assert self._consumer is not None, "start() first"
        wait = self.poll_timeout if poll_timeout is None else poll_timeout
        # a batch held from a failed attempt comes first: its messages are past the
        # consumer's position already, and nothing may be stored beyond them before they are
        messages = self._held or await self._consumer.poll(self.batch_max, wait)
        self._held = messages
        if self._consumer.generation != self._generation:
            # partitions moved: visits of newly assigned visitors are in the store, not here
            await self._reload_sessions()
            self._generation = self._consumer.generation  # only once the reload worked
        if not messages:
            await self._housekeeping()
            return 0
        began = time.perf_counter()
        batch, by_site = await self._build(messages)
        try:
            await self._write(batch)
        except PositionConflict as exc:
            log.warning("partition moved under this processor (%s): resyncing", exc)
            await self._resync()
            return 0
        self._held = []
        await self._consumer.commit(batch.positions)
        now = self._clock()
        for event in batch.events:
            self.metrics.end_to_end_seconds.observe(max(0, now - event.received_at) / 1000)
        self.metrics.events_processed.inc(len(batch.events))
        self.metrics.batch_seconds.observe(time.perf_counter() - began)
        self.processed += len(batch.events)
        self.batches += 1
        if time.monotonic() - self._last_lag > 10:  # under load too, not only when idle
            self._last_lag = time.monotonic()
            lag = await self._consumer.lag()
            if lag is not None:
                self.metrics.processor_lag.set(lag)
        await self._publish(by_site, batch.drops, now)
        return len(messages)

    async def _build(
        self, messages: list[LogMessage]
    ) -> tuple[WriteBatch, dict[str, list[ProcessedEvent]]]:
        positions: dict[int, int] = {}
        starts: dict[int, int] = {}
        decoded: list[AcceptedEvent] = []
        drops: Counter[tuple[str, str]] = Counter()
        undecodable: list[LogMessage] = []
        for message in messages:
            starts.setdefault(message.partition, message.offset)
            positions[message.partition] = message.offset + 1
            try:
                decoded.append(_DECODER.decode(message.value))
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.error("undecodable log message at %s/%s", message.partition, message.offset)
                undecodable.append(message)
        fresh = await self._dedupe(decoded, drops)
        if undecodable:
            # kept for an operator (hitstream replay --dead-letter) before the batch commits;
            # after the dedupe lookup, so that a batch held and retried because that lookup
            # failed does not dead-letter its messages twice
            await self.log.dead_letter(undecodable, "undecodable")
            drops[("", "undecodable")] += len(undecodable)
            self.metrics.events_dropped.labels("undecodable").inc(len(undecodable))
        # the CPU-heavy part runs off the event loop, so HTTP requests in the same process
        # (serve) are not held up for a whole batch; only this task touches the visit state
        events, sessions, step_drops = await asyncio.to_thread(self._enrich, fresh)
        drops.update(step_drops)
        by_site: dict[str, list[ProcessedEvent]] = defaultdict(list)
        for event in events:
            by_site[event.site_id].append(event)
        batch = WriteBatch(
            stream=self.stream,
            positions=positions,
            events=events,
            sessions=sessions,
            drops=dict(drops),
            starts=starts,
        )
        return batch, by_site

    def _enrich(
        self, fresh: list[AcceptedEvent]
    ) -> tuple[list[ProcessedEvent], list[Session], Counter[tuple[str, str]]]:
        kept, drops = self.runner.run(fresh)
        events: list[ProcessedEvent] = []
        for working in kept:
            self.sessions.assign(working.out, working.accepted.visitor_id_prev)
            events.append(working.out)
        return events, self.sessions.drain_touched(), drops

    async def _dedupe(
        self, events: list[AcceptedEvent], drops: Counter[tuple[str, str]]
    ) -> list[AcceptedEvent]:
        known = await self.store.known_event_ids([e.event_id for e in events])
        fresh: list[AcceptedEvent] = []
        for event in events:
            if event.event_id in known:
                drops[(event.site_id, "duplicate")] += 1
                self.metrics.events_dropped.labels("duplicate").inc()
                continue
            known.add(event.event_id)
            fresh.append(event)
        return fresh

    async def _write(self, batch: WriteBatch) -> None:
        delay = 0.2
        while True:
            began = time.perf_counter()
            try:
                await self.store.write(batch)
            except StoreUnavailable as exc:
                self.metrics.store_errors.inc()
                log.warning("store write failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)  # cheap while down: the store fails fast
                continue
            self.metrics.store_write_seconds.observe(time.perf_counter() - began)
            return

    async def _publish(
        self,
        by_site: dict[str, list[ProcessedEvent]],
        drops: dict[tuple[str, str], int],
        now: int,
    ) -> None:
        dropped_by_site: dict[str, dict[str, int]] = defaultdict(dict)
        for (site, reason), count in drops.items():
            dropped_by_site[site][reason] = count
        for site in set(by_site) | {s for s in dropped_by_site if s}:
            try:
                version = await self.store.data_version(site)
                message = live_message(
                    site, version, by_site.get(site, []), dropped_by_site.get(site, {}), now
                )
                await self.fanout.publish(f"site:{site}", message)
            except AdapterUnavailable as exc:  # live updates pause; processing goes on
                log.warning("live update for %s not published: %s", site, exc)

    async def _housekeeping(self) -> None:
        now = self._clock()
        if now - self._last_housekeeping < 60_000:
            return
        self._last_housekeeping = now
        self.sessions.evict(now - 2 * self.sessions.timeout_ms)
        if self._consumer is not None:
            lag = await self._consumer.lag()
            if lag is not None:
                self.metrics.processor_lag.set(lag)
        if self.retention_ms > 0:
            removed = await self.store.delete_before(now - self.retention_ms)
            if removed:
                log.info("retention removed %d events", removed)
