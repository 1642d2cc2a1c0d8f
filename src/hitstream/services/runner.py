"""The batch runner: one polled batch into the store, with every message accounted for.

The rule (docs/decisions/0007-the-position-rule.md): whatever fails between the poll and the
store's commit (the store, the log, a step, the clock), each message of the batch ends up
written once or dead-lettered with a reason, and no stored position ever passes a message that
is neither. How each failure is met:

- transient, ``AdapterUnavailable`` (the store or the log is down), or any failure that no
  message can have caused (reloading the visit state, keeping dead letters): the same
  messages again after a backoff with jitter, for as long as it takes (the lag grows, alerts
  say so);
- an event step raises on one event: that event is dead-lettered (reason ``<step>: <error>``)
  and counted as ``dead_letter:<step>``; the others go on;
- anything else (a bug, a value nobody foresaw): tried ``attempts`` times, then the batch is
  halved and each half run alone, down to the one message that still fails, which is
  dead-lettered with the stage and the error; the rest is written as usual;
- ``PositionConflict`` (another processor stored these already): passed up, the processor
  drops its state and resumes from the store;
- the caller gives up (the process stops and its drain time is over): ``BatchAbandoned``,
  nothing more written, so the next start reads the rest again from the stored position.

Every retry starts from the visit state in the store (``Sessionizer.reset``), so a half-done
attempt leaves no trace; a message dead-lettered by an earlier attempt is not sent twice.
Drop counts are part of the write: they are counted once, with the batch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hitstream.backoff import Backoff
from hitstream.domain.events import AcceptedEvent, ProcessedEvent
from hitstream.domain.sessions import NEVER, Sessionizer
from hitstream.errors import AdapterUnavailable, PositionConflict, StoreUnavailable
from hitstream.log.base import EventLog, LogMessage
from hitstream.metrics import Metrics
from hitstream.services import wire
from hitstream.services.pipeline import Pipeline, StepFailed
from hitstream.stores.base import Store, WriteBatch

log = logging.getLogger(__name__)
UNDECODABLE = "undecodable"
MAX_REASON = 300
_NOT_THE_MESSAGES = frozenset({"reload", "recall", "dead_letter"})
"""Stages whose failure no message can have caused: retried, never split or dead-lettered."""

Where = tuple[int, int]
"""(partition, offset) of a message."""
Dead = dict[Where, tuple[str, str]]
"""Messages of the batch dead-lettered already -> their (site, drop reason)."""


class BatchAbandoned(Exception):
    """The caller gave up on a batch (stopping): the rest of it was not written, so the
    consumer's position must go back to the store's before anything else is read."""


class _Restart(Exception):
    """A stateful step raised on an event: that event is dead-lettered; run the batch again
    from the stored visit state, without it."""


@dataclass(slots=True)
class Stored:
    """What a batch left in the store: the positions after it, the events written, the drop
    counts (dead letters included); ``messages`` is how many log messages it covered."""

    messages: int
    positions: dict[int, int]
    events: list[ProcessedEvent] = field(default_factory=list)
    drops: Counter[tuple[str, str]] = field(default_factory=Counter)

    def then(self, later: Stored) -> Stored:
        """This batch followed by a later one (two halves of a split batch)."""
        return Stored(
            self.messages + later.messages,
            {**self.positions, **later.positions},
            self.events + later.events,
            self.drops + later.drops,
        )


def _reason(stage: str, error: BaseException) -> str:
    return f"{stage}: {type(error).__name__}: {error}"[:MAX_REASON]


def _site_of(message: LogMessage) -> str:
    try:
        return wire.decode(message.value).site_id
    except wire.DecodeErrors:
        return ""


class BatchRunner:
    def __init__(
        self,
        log: EventLog,
        store: Store,
        pipeline: Pipeline,
        sessions: Sessionizer,
        metrics: Metrics,
        *,
        backoff: Backoff,
        clock: Callable[[], int],
        attempts: int = 3,
    ) -> None:
        self.log = log
        self.store = store
        self.pipeline = pipeline
        self.sessions = sessions
        self.metrics = metrics
        self.backoff = backoff
        self.attempts = attempts
        self.stale = False
        """Set when the visit state may be ahead of the store: reloaded before the next try."""
        self._clock = clock
        self._stage = ""
        self._stateful = {step.name for step in pipeline.steps if step.stateful}
        self._write_seconds = metrics.store_write_seconds

    async def reload(self) -> None:
        """Visit state from the store: the visits open (or recent enough to be continued) at
        the newest visit stored, or now if that is later: where a backlog hours old resumes
        (open by the wall clock, its open visits were not loaded and were cut in two)."""
        now, newest = self._clock(), await self.store.newest_visit_ms()
        since = (now if newest is None else min(now, newest)) - 2 * self.sessions.timeout_ms
        loaded = await self.store.open_sessions(since)
        # nothing stored, nothing forgotten: no event of a first backlog is late
        self.sessions.reset(loaded, since if newest is not None else NEVER)
        self.stale = False

    async def run(
        self, messages: Sequence[LogMessage], *, stream: str, give_up: Callable[[], bool]
    ) -> Stored:
        """Write ``messages`` (one poll, in log order) under the rule of the module doc."""
        return await self._run(messages, stream, {}, give_up, self.attempts)

    async def _run(
        self,
        messages: Sequence[LogMessage],
        stream: str,
        dead: Dead,
        give_up: Callable[[], bool],
        attempts: int,
    ) -> Stored:
        failures = retries = 0
        poison: tuple[str, str] | None = None
        """(stage, reason) of the one message that keeps failing: dead-letter it."""
        while True:
            try:
                return await self._attempt(messages, stream, dead, poison)
            except PositionConflict:
                self.stale = True
                raise
            except _Restart:
                self.stale = True
                continue
            except Exception as exc:
                self.stale = True
                stage, error = self._cause(exc)
                at = f"{messages[0].partition}/{messages[0].offset}+{len(messages)}"
                if isinstance(error, AdapterUnavailable) or stage in _NOT_THE_MESSAGES:
                    if isinstance(error, StoreUnavailable):
                        self.metrics.store_errors.inc()
                    log.warning("batch %s not stored (%s: %s): retrying", at, stage, error)
                else:
                    failures += 1
                    log.error("batch %s failed in %s", at, stage, exc_info=error)
                    if failures >= attempts and len(messages) > 1:
                        return await self._split(messages, stream, dead, give_up)
                    if failures >= attempts and poison is None:
                        poison = (stage, _reason(stage, error))
                        continue  # dead-letter it now, then write past it
            if give_up():
                raise BatchAbandoned(f"gave up on {len(messages)} messages while stopping")
            await self.backoff.wait(retries)
            retries += 1

    def _cause(self, exc: Exception) -> tuple[str, Exception]:
        """(stage, error): the step a batch step's error came from, else where we were."""
        if isinstance(exc, StepFailed):
            return exc.step, exc.error
        return self._stage, exc

    async def _split(
        self,
        messages: Sequence[LogMessage],
        stream: str,
        dead: Dead,
        give_up: Callable[[], bool],
    ) -> Stored:
        """Each half alone: a half that fails again is halved at once (a message that fails
        the same way every time is found in log2(n) tries); a single message gets the full
        ``attempts`` before it is dead-lettered."""
        half = len(messages) // 2
        parts = (messages[:half], messages[half:])
        stored = [
            await self._run(part, stream, dead, give_up, 1 if len(part) > 1 else self.attempts)
            for part in parts
        ]
        return stored[0].then(stored[1])

    async def _attempt(
        self,
        messages: Sequence[LogMessage],
        stream: str,
        dead: Dead,
        poison: tuple[str, str] | None,
    ) -> Stored:
        self._stage = "reload"
        if self.stale:
            await self.reload()
        if poison is not None and (messages[0].partition, messages[0].offset) not in dead:
            stage, reason = poison
            found = [(messages[0], _site_of(messages[0]))]
            await self._dead_letter(found, reason, f"dead_letter:{stage}", dead)
        positions: dict[int, int] = {}
        starts: dict[int, int] = {}
        decoded: list[tuple[LogMessage, AcceptedEvent]] = []
        undecodable: list[tuple[LogMessage, str]] = []
        for message in messages:
            starts.setdefault(message.partition, message.offset)
            positions[message.partition] = message.offset + 1
            if dead and (message.partition, message.offset) in dead:
                continue
            try:
                decoded.append((message, wire.decode(message.value)))
            except wire.DecodeErrors:
                log.error("undecodable log message at %s/%s", message.partition, message.offset)
                undecodable.append((message, ""))
        if undecodable:  # kept for an operator (hitstream replay --dead-letter)
            await self._dead_letter(undecodable, UNDECODABLE, UNDECODABLE, dead)
        taken = [accepted for _, accepted in decoded]
        self._stage = "recall"
        late, recalled = await self._recall(taken)
        self._stage = "pipeline"
        ran = await self.pipeline.run(taken)
        if ran.failed:
            source = {id(accepted): message for message, accepted in decoded}
            by_reason: defaultdict[tuple[str, str], list[tuple[LogMessage, str]]]
            by_reason = defaultdict(list)
            for failed in ran.failed:
                message = source[id(failed.working.accepted)]
                key = (failed.step, _reason(failed.step, failed.error))
                by_reason[key].append((message, failed.working.out.site_id))
            for (step, reason), found in by_reason.items():
                log.error("%d event(s) dead-lettered by step %s", len(found), reason)
                await self._dead_letter(found, reason, f"dead_letter:{step}", dead)
            if {failed.step for failed in ran.failed} & self._stateful:
                raise _Restart
        drops = Counter(ran.drops)
        if dead:
            for message in messages:
                counted = dead.get((message.partition, message.offset))
                if counted is not None:
                    drops[counted] += 1
        events = [working.out for working in ran.kept]
        batch = WriteBatch(
            stream=stream,
            positions=positions,
            events=events,
            sessions=self.sessions.drain_touched(),
            drops=dict(drops),
            starts=starts,
        )
        self._stage = "write"
        began = time.perf_counter()
        await self.store.write(batch)
        self._write_seconds.observe(time.perf_counter() - began)
        self.metrics.late_events.inc(late)  # counted once stored: a retry does not count twice
        self.metrics.visits_recalled.inc(recalled)
        return Stored(len(messages), positions, events, drops)

    async def _recall(self, events: Sequence[AcceptedEvent]) -> tuple[int, int]:
        """Load the stored visits that late events of the batch may continue and that the
        visit state no longer holds (decision 0057): an event sent hours late joins its
        visit instead of starting one. One comparison an event; a query only when some are
        late. (late events, visits loaded)."""
        sessions = self.sessions
        late = [e for e in events if sessions.late(e.timestamp)]
        if not late:
            return 0, 0
        wanted = {(e.site_id, e.visitor_id) for e in late}
        wanted |= {(e.site_id, e.visitor_id_prev) for e in late if e.visitor_id_prev}
        since = min(e.timestamp for e in late) - sessions.timeout_ms
        found = await self.store.visits_of(sorted(wanted), since)
        sessions.load(found)
        return len(late), len(found)

    async def _dead_letter(
        self, found: list[tuple[LogMessage, str]], reason: str, drop: str, dead: Dead
    ) -> None:
        """Keep ``found`` (message, site) in the log's dead letters, then remember them as
        handled for every later try of this batch."""
        self._stage = "dead_letter"
        await self.log.dead_letter([message for message, _ in found], reason)
        for message, site in found:
            dead[(message.partition, message.offset)] = (site, drop)
