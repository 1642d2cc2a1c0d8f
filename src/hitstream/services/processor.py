"""The processor: poll the log -> the batch runner (pipeline, ONE store transaction) ->
commit the log -> publish live updates.

Effectively-once: the store transaction holds the batch's events, the visits they changed AND
the log positions after the batch. After a crash the processor starts from the positions in
the store (not the log's own commit, which may lag or lead), and reloads open visits from the
store, so every event is stored once and every visit counted once. Event ids stored already
(a client retrying with the same ``event_id``) are dropped as ``duplicate``.

Nothing polled is ever skipped: the batch runner (``hitstream.services.runner``) owns what
happens when anything fails before the store's commit (retries with backoff, dead letters);
when it gives up (stopping), the consumer is recreated from the stored positions before the
next poll. After the commit everything is best effort: a log commit, a metric, a live update
that fails is logged and the processor goes on (the store has the data and the position).

Fencing: each batch carries the offset it starts at per partition, and the store refuses it
(``PositionConflict``) if another processor already stored past that point, as happens when a
partition moves during a rebalance. The processor then drops its visit state, rejoins, and
resumes from the store: two processors never both count the same messages into a visit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Final

import msgspec

from hitstream.backoff import Backoff
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.sessions import Sessionizer
from hitstream.errors import AdapterUnavailable, ConfigError, PositionConflict
from hitstream.fanout.base import Fanout
from hitstream.log.base import EventLog, LogConsumer
from hitstream.metrics import Metrics, observe_many
from hitstream.services.live_views import live_event
from hitstream.services.pipeline import Pipeline
from hitstream.services.runner import BatchAbandoned, BatchRunner, Stored
from hitstream.services.write_buffer import WriteBuffer
from hitstream.stores.base import Store

log = logging.getLogger(__name__)
_ENCODER = msgspec.json.Encoder()
LIVE_EVENTS_PER_MESSAGE = 100


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
            "events": [live_event(e) for e in shown],
            "dropped": dropped,
        }
    )


REGISTRY_CHECK_MS: Final = 1_000
IDLE_WRITE_S: Final = 0.05
"""With events held, a poll that waits this long and finds nothing new writes them if the
last write is a buffer wait old (``WriteBuffer.spaced``): a burst after a quiet spell is
written at once, steady traffic once per buffer wait."""
GATHER_S: Final = 0.1
"""Holding events that cannot be written yet (the last write is recent), the processor
polls at most this often: at 100 events/s one poll per 10 events, not one per event."""
SITE_RETENTION_EVERY_MS: Final = 600_000
IDLE_LAG_S: Final = 5.0
"""While polls find nothing, the lag gauge is read this often."""
STORE_GAUGES_S: Final = 10.0
"""The store's memory gauges are read this often, after writes and while idle alike."""


class Processor:
    def __init__(
        self,
        log: EventLog,
        store: Store,
        fanout: Fanout,
        pipeline: Pipeline,
        metrics: Metrics,
        *,
        sessions: Sessionizer,
        stream: str,
        group: str = "processor",
        batch_max: int = 5000,
        poll_timeout: float = 0.2,
        retention_ms: int = 0,
        clock: Callable[[], int] | None = None,
        backoff: Backoff | None = None,
        drain_timeout_s: float = 60.0,
        buffer_events: int | None = None,
        buffer_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``sessions`` is the visit state the pipeline's ``put_session`` step keeps;
        ``clock`` gives epoch ms and ``backoff`` waits between retries (tests pass fakes).
        The write buffer (``services/write_buffer.py``) holds up to ``buffer_events``
        (default ``batch_max``) messages for at most ``buffer_s`` seconds of ``monotonic``
        before one store write takes them all; 0 s writes every poll at once."""
        self.log = log
        self.store = store
        self.fanout = fanout
        self.metrics = metrics
        self.stream = stream
        self.group = group
        self.batch_max = batch_max
        self.poll_timeout = poll_timeout
        self.retention_ms = retention_ms
        self.drain_timeout_s = drain_timeout_s
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._backoff = backoff or Backoff()
        self._monotonic = monotonic
        self.buffer = WriteBuffer(buffer_events or batch_max, buffer_s)
        self.runner = BatchRunner(
            log, store, pipeline, sessions, metrics, backoff=self._backoff, clock=self._clock
        )
        self._consumer: LogConsumer | None = None
        self._generation = 0
        self._stale = False
        """The consumer read past what the store has (a batch given up): recreate it."""
        self._stop: asyncio.Event | None = None
        self._stopping_since: float | None = None
        self._last_housekeeping = 0
        self._last_site_retention = 0
        self._registry_version: int | None = None
        self._registry_checked = -float(REGISTRY_CHECK_MS)
        self._last_lag = 0.0
        self._last_gauges = -STORE_GAUGES_S  # read at the first chance
        self.processed = 0
        self.batches = 0
        self.caught_up = asyncio.Event()

    @property
    def sessions(self) -> Sessionizer:
        return self.runner.sessions

    async def start(self, consumer: LogConsumer | None = None) -> None:
        """Begin consuming: from the store's positions, or from ``consumer`` (replay)."""
        await self.runner.reload()
        self._consumer = consumer or self.log.consumer(self.group, self._stored_position)
        self._generation = self._consumer.generation
        self._stale = False

    async def _stored_position(self, partition: int) -> int | None:
        """Read fresh at every assignment: after a rebalance another processor may have
        moved a partition on since this one last saw it."""
        return (await self.store.positions(self.stream)).get(partition)

    async def _resync(self) -> None:
        """Forget what was read and the visit state; rejoin and resume from the store."""
        self.runner.stale = True
        self.buffer.clear()  # the new consumer reads it again from the stored position
        if self._consumer is not None:
            await self._consumer.close()
        self._consumer = self.log.consumer(self.group, self._stored_position)
        self._generation = self._consumer.generation
        self._stale = False

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.close()
            self._consumer = None

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set, then drain what the log holds, then return. A
        failure outside a batch (a poll, housekeeping) waits a backoff and goes on."""
        self._stop = stop
        failures = 0
        while not stop.is_set():
            try:
                count = await self.process_once()
            except BatchAbandoned:
                break
            except ConfigError:  # a setting: no retry mends it (the runtime stops)
                raise
            except Exception as exc:
                if isinstance(exc, AdapterUnavailable):
                    log.warning("processor paused: %s", exc)
                else:
                    log.exception("processor round failed")
                await self._backoff.wait(failures)
                failures += 1
                continue
            failures = 0
            if count == 0 and not self.buffer:
                self.caught_up.set()
        await self.drain()

    def _give_up(self) -> bool:
        """Whether to abandon a batch the runner cannot store: only while stopping, once
        the drain time is over (the next start reads it again)."""
        if self._stop is None or not self._stop.is_set():
            return False
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
        return time.monotonic() - self._stopping_since > self.drain_timeout_s

    async def drain(self) -> None:
        """Process what the log holds now, for at most ``drain_timeout_s``."""
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
        while time.monotonic() - self._stopping_since < self.drain_timeout_s:
            try:
                if await self.process_once(poll_timeout=0.0, flush=True) == 0:
                    return
            except BatchAbandoned:
                log.warning("stopping with a batch not stored: the next start reads it again")
                return
            except Exception as exc:
                log.warning("drain stopped: %s", exc)
                return

    async def process_once(self, poll_timeout: float | None = None, *, flush: bool = False) -> int:
        """Poll once into the write buffer; when a write is due (the buffer is full, its
        oldest message waited ``buffer_s``, the poll found nothing new and the last write
        is ``buffer_s`` old, or ``flush``), store the whole buffer. Returns
        how many log messages were polled or stored (0: nothing new and nothing written)."""
        assert self._consumer is not None, "start() first"
        if self._stale:
            await self._resync()
        longest = self.poll_timeout if poll_timeout is None else poll_timeout
        if self.buffer and self.buffer.spaced(self._monotonic()):
            longest = min(longest, IDLE_WRITE_S)  # a short quiet spell is enough to write
        elif self.buffer and not flush:
            # nothing is written before the buffer is due or spaced: gather what arrives
            # meanwhile into one poll instead of one poll per event
            pause = min(GATHER_S, self.buffer.wait(self._monotonic(), longest))
            if pause > 0 and self.buffer.room():
                await asyncio.sleep(pause)
                longest = 0.0
        wait = 0.0 if flush else self.buffer.wait(self._monotonic(), longest)
        room = min(self.batch_max, self.buffer.room())
        messages = await self._consumer.poll(room, wait) if room else []
        if self._consumer.generation != self._generation:
            # partitions moved: visits of newly assigned visitors are in the store, not here
            self._generation = self._consumer.generation
            self.runner.stale = True
        now = self._monotonic()
        self.buffer.add(messages, now)
        if not self.buffer:
            await self._idle_lag()
            await self._housekeeping()
            return 0
        if messages and not (flush or self.buffer.due(now)):
            return len(messages)  # held: the log keeps them until the write
        if not (messages or flush or self.buffer.due(now) or self.buffer.spaced(now)):
            return 0  # quiet, but the last write is recent: held until due or spaced
        # written now: full, due, flushing, or a poll found nothing new (the traffic paused:
        # waiting longer would only delay the live update) and the last write is not recent
        messages = self.buffer.take(now)
        await self._follow_registry()
        began = time.perf_counter()
        try:
            stored = await self.runner.run(messages, stream=self.stream, give_up=self._give_up)
        except PositionConflict as exc:
            log.warning("partition moved under this processor (%s): resyncing", exc)
            await self._resync()
            return 0
        except BaseException:
            self._stale = True  # the consumer is past what the store has
            raise
        self.processed += len(stored.events)
        self.batches += 1
        await self._committed(stored, began)
        return len(messages)

    async def _committed(self, stored: Stored, began: float) -> None:
        """After the store's commit: log commit, metrics, live updates, all best effort."""
        try:
            await self._consumer_commit(stored.positions)
            now = self._clock()
            observe_many(
                self.metrics.end_to_end_seconds,
                [max(0, now - event.received_at) / 1000 for event in stored.events],
            )
            self.metrics.events_processed.inc(len(stored.events))
            for (_, reason), count in stored.drops.items():
                self.metrics.events_dropped.labels(reason).inc(count)
            self.metrics.batch_seconds.observe(time.perf_counter() - began)
            if time.monotonic() - self._last_lag > 10:  # under load too, not only when idle
                self._last_lag = time.monotonic()
                assert self._consumer is not None
                lag = await self._consumer.lag()
                if lag is not None:
                    self.metrics.processor_lag.set(lag)
            await self._store_gauges()
            await self._publish(stored, now)
            # here too, not only when a poll finds the log empty: a site that never pauses
            # for a poll's wait would otherwise never evict closed visits nor apply retention
            await self._housekeeping()
        except Exception as exc:  # the store has the batch and its position
            log.warning("after storing a batch: %r", exc)

    async def _consumer_commit(self, positions: Mapping[int, int]) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit(positions)
        except Exception as exc:  # a hint only: the store's position is the truth
            log.warning("log commit failed (the store has the position): %s", exc)

    async def _publish(self, stored: Stored, now: int) -> None:
        by_site: dict[str, list[ProcessedEvent]] = defaultdict(list)
        for event in stored.events:
            by_site[event.site_id].append(event)
        dropped_by_site: dict[str, dict[str, int]] = defaultdict(dict)
        for (site, reason), count in stored.drops.items():
            dropped_by_site[site][reason] = count
        for site in set(by_site) | {s for s in dropped_by_site if s}:
            try:
                version = await self.store.data_version(site)
                message = live_message(
                    site, version, by_site.get(site, []), dropped_by_site.get(site, {}), now
                )
                await self.fanout.publish(f"site:{site}", message)
            except Exception as exc:  # live updates pause; processing goes on
                log.warning("live update for %s not published: %s", site, exc)

    async def _follow_registry(self) -> None:
        """Reload the visit state when the registry moved (at most once a second): forgetting
        a user deletes visits this processor may hold open, and a continued one would bring
        their counts back. Between batches the visit state equals the store's, so reloading
        it is always safe."""
        now = time.monotonic() * 1000  # not the injected clock: this is only pacing
        if now - self._registry_checked < REGISTRY_CHECK_MS:
            return
        self._registry_checked = now
        try:
            version = await self.store.registry_version()
        except AdapterUnavailable:
            return  # the batch's write will say so
        if self._registry_version is not None and version != self._registry_version:
            self.runner.stale = True
        self._registry_version = version

    async def _site_retention(self, now: int) -> None:
        """Delete what each site keeps past its own retention (every 10 minutes)."""
        if now - self._last_site_retention < SITE_RETENTION_EVERY_MS:
            return
        self._last_site_retention = now
        for site in await self.store.registered_sites():
            if site.retention_days > 0:
                cutoff = now - site.retention_days * 86_400_000
                removed = await self.store.delete_site_before(site.site_id, cutoff)
                if removed:
                    log.info("retention removed %d events of %s", removed, site.site_id)

    async def _store_gauges(self) -> None:
        """The store's memory gauges, every ``STORE_GAUGES_S``, after writes and while idle
        alike. They shared the lag's clock, which the idle reading resets every 5 s: on a
        site whose writes come more than 5 s apart they were never read at all."""
        if time.monotonic() - self._last_gauges < STORE_GAUGES_S:
            return
        self._last_gauges = time.monotonic()
        for tag, used in (await self.store.memory_usage()).items():
            self.metrics.store_memory.labels(tag).set(used)
        for state, held in (await self.store.allocator_usage()).items():
            self.metrics.store_allocator.labels(state).set(held)
        self.metrics.store_view_groups.set(await self.store.view_groups())

    async def _idle_lag(self) -> None:
        """The lag gauge while nothing arrives, every ``IDLE_LAG_S`` (after a write it is
        read every 10 s): a standby that took over showed the lag it started with for a
        minute after it had caught up."""
        try:
            await self._store_gauges()
        except AdapterUnavailable as exc:
            log.debug("store gauges unknown while idle: %s", exc)
        if self._consumer is None or time.monotonic() - self._last_lag < IDLE_LAG_S:
            return
        self._last_lag = time.monotonic()
        try:
            lag = await self._consumer.lag()
        except AdapterUnavailable as exc:
            log.debug("lag unknown while idle: %s", exc)
            return
        if lag is not None:
            self.metrics.processor_lag.set(lag)

    async def _housekeeping(self) -> None:
        now = self._clock()
        if now - self._last_housekeeping < 60_000:
            return
        self._last_housekeeping = now
        # by the events' time: a backlog's visits close as its events pass them, not at once
        self.sessions.evict(self.sessions.horizon(now) - 2 * self.sessions.timeout_ms)
        if self.retention_ms > 0:
            removed = await self.store.delete_before(now - self.retention_ms)
            if removed:
                log.info("retention removed %d events", removed)
        await self._site_retention(now)
