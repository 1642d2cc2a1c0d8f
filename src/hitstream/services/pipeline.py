"""The processing pipeline: one named list of steps, run step-major over a batch.

``processing_steps`` is the list, in the order the steps run: ``drop_duplicate``,
``drop_unregistered`` (the site was removed after the collector took the event: a removed
site's data must not come back, nor a replay bring back events of one), ``drop_forgotten``
(events of a user forgotten on request, received before they were forgotten: still in the
log, or replayed), the enrichment steps
of ``hitstream.domain.steps`` (``drop_bot`` first), then ``put_session``.
Two kinds of step:

- an *event step* (``hitstream.domain.pipeline.Step``) takes one event and returns ``None`` or
  a ``Drop``. Consecutive event steps run together in one worker thread, each over the whole
  batch before the next (step-major: one timer read per step per batch), so HTTP requests in
  the same process are not held up for a batch;
- a *batch step* (``BatchStep``) is a coroutine over the whole batch, for a step that asks an
  adapter once per batch (``drop_duplicate`` asks the store which ids it holds).

``Pipeline.run`` times each step, counts drops by (site, reason), and keeps going when an
event step raises on one event: that event stops, listed in ``Ran.failed`` with the step and
the error, and the batch runner (``hitstream.services.runner``) dead-letters it. A batch step
that raises fails the whole attempt (``StepFailed``); the runner retries it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from hitstream.domain.events import AcceptedEvent
from hitstream.domain.pipeline import (
    BotDetector,
    Drop,
    Step,
    UserAgentParser,
    Working,
    start,
)
from hitstream.domain.sessions import Sessionizer
from hitstream.domain.steps import build_steps, put_session_with
from hitstream.metrics import Metrics

BatchStep = Callable[[Sequence[Working]], Awaitable[list[Drop | None]]]
"""A step over the whole batch: one outcome per event, in order."""
DUPLICATE = Drop("duplicate")
UNREGISTERED = Drop("site_not_registered")
FORGOTTEN = Drop("forgotten_user")


@dataclass(frozen=True, slots=True)
class Named:
    """A step of the pipeline with its name (the ``step`` label of its timings)."""

    name: str
    each: Step | None = None
    batch: BatchStep | None = None
    stateful: bool = False
    """It keeps state across events (open visits): after it raised on one event, the runner
    restarts the attempt from reloaded state instead of carrying on."""


def event_step(name: str, step: Step, *, stateful: bool = False) -> Named:
    return Named(name, each=step, stateful=stateful)


def batch_step(name: str, step: BatchStep) -> Named:
    return Named(name, batch=step)


class KnownIds(Protocol):
    """What ``drop_duplicate`` asks of the store (the ``Store`` port fits)."""

    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]: ...


def drop_duplicate_with(store: KnownIds) -> BatchStep:
    """A ``drop_duplicate`` step: an event whose id the store holds, or that came earlier in
    the batch, stops here (a client retrying with its own ``event_id``, a replay)."""

    async def drop_duplicate(batch: Sequence[Working]) -> list[Drop | None]:
        known = await store.known_event_ids([w.accepted.event_id for w in batch])
        outcomes: list[Drop | None] = []
        for working in batch:
            event_id = working.accepted.event_id
            if event_id in known:
                outcomes.append(DUPLICATE)
            else:
                known.add(event_id)
                outcomes.append(None)
        return outcomes

    return drop_duplicate


class SiteBook(Protocol):
    """The registered sites and the forgotten users (``services.access.Gatekeeper``)."""

    async def sites(self) -> Mapping[str, object]: ...

    async def forgotten_users(self) -> Mapping[tuple[str, str], int]: ...


def drop_unregistered_with(book: SiteBook) -> BatchStep:
    """A ``drop_unregistered`` step: an event of a site that is not registered (any more)
    stops here; the collector checked when it took the event, but the site may be gone."""

    async def drop_unregistered(batch: Sequence[Working]) -> list[Drop | None]:
        sites = await book.sites()
        refresh = getattr(book, "refresh", None)
        if refresh is not None and any(w.accepted.site_id not in sites for w in batch):
            # registered a moment ago in another process (serve's web process, a collector):
            # this book may not have seen it yet; ask the registry before dropping anything
            await refresh(force=True)
            sites = await book.sites()
        return [None if w.accepted.site_id in sites else UNREGISTERED for w in batch]

    return drop_unregistered


def drop_forgotten_with(book: SiteBook) -> BatchStep:
    """A ``drop_forgotten`` step: an event of a user forgotten on request, received before
    the user was forgotten, stops here (a forgotten user's events never come back)."""

    async def drop_forgotten(batch: Sequence[Working]) -> list[Drop | None]:
        gone = await book.forgotten_users()
        if not gone:
            return [None] * len(batch)
        outcomes: list[Drop | None] = []
        for working in batch:
            event = working.accepted
            at = gone.get((event.site_id, event.visitor_id))
            outcomes.append(FORGOTTEN if at is not None and event.received_at <= at else None)
        return outcomes

    return drop_forgotten


def processing_steps(
    store: KnownIds,
    user_agents: UserAgentParser,
    bots: BotDetector,
    sessions: Sessionizer,
    sites: SiteBook,
) -> list[Named]:
    """The processor's pipeline: every step, named, in the order it runs."""
    return [
        batch_step("drop_duplicate", drop_duplicate_with(store)),
        batch_step("drop_unregistered", drop_unregistered_with(sites)),
        batch_step("drop_forgotten", drop_forgotten_with(sites)),
        *(event_step(name, step) for name, step in build_steps(user_agents, bots)),
        event_step("put_session", put_session_with(sessions), stateful=True),
    ]


def _event_time(working: Working) -> int:
    return working.out.timestamp


def _working(events: Sequence[AcceptedEvent]) -> list[Working]:
    return [start(event) for event in events]


class Failed(NamedTuple):
    """An event an event step raised on: it goes to the dead letters, not to the store."""

    working: Working
    step: str
    error: Exception


@dataclass(slots=True)
class Ran:
    kept: list[Working]
    """The events that made it through: in input order, by time (stable) from the first
    stateful step on."""
    drops: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(site, reason) -> events dropped by a step."""
    failed: list[Failed] = field(default_factory=list)


class StepFailed(Exception):
    """A batch step raised: the whole attempt failed (``__cause__`` is the error)."""

    def __init__(self, step: str, error: Exception) -> None:
        super().__init__(f"{step}: {error!r}")
        self.step = step
        self.error = error


class Pipeline:
    def __init__(self, steps: Sequence[Named], metrics: Metrics) -> None:
        self.steps = list(steps)
        self._timers = {step.name: metrics.step_seconds.labels(step.name) for step in steps}
        self._segments: list[Named | list[Named]] = []
        for step in self.steps:
            if step.batch is not None:
                self._segments.append(step)
            elif self._segments and isinstance(self._segments[-1], list):
                self._segments[-1].append(step)
            else:
                self._segments.append([step])

    @property
    def names(self) -> list[str]:
        return [step.name for step in self.steps]

    async def run(self, events: Sequence[AcceptedEvent]) -> Ran:
        """Every step over ``events`` (the working rows are made in a worker thread too: a
        copy per event is CPU the event loop should not spend)."""
        ran = Ran(await asyncio.to_thread(_working, events) if events else [])
        for segment in self._segments:
            if not ran.kept:
                break
            if isinstance(segment, list):
                ran.kept = await asyncio.to_thread(self._run_events, segment, ran)
            else:
                ran.kept = await self._run_batch(segment, ran)
        return ran

    async def _run_batch(self, step: Named, ran: Ran) -> list[Working]:
        assert step.batch is not None
        began = time.perf_counter()
        try:
            outcomes = await step.batch(ran.kept)
        except Exception as exc:
            raise StepFailed(step.name, exc) from exc
        kept: list[Working] = []
        for working, outcome in zip(ran.kept, outcomes, strict=True):
            if outcome is None:
                kept.append(working)
            else:
                ran.drops[(working.out.site_id, outcome.reason)] += 1
        self._timers[step.name].observe(time.perf_counter() - began)
        return kept

    def _run_events(self, steps: list[Named], ran: Ran) -> list[Working]:
        """Event steps, step-major, in a worker thread (only this batch's task touches
        ``ran`` and the steps' state meanwhile)."""
        alive = ran.kept
        drops, failed = ran.drops, ran.failed
        for step in steps:
            began = time.perf_counter()
            run, name = step.each, step.name
            assert run is not None
            if step.stateful:  # visits are built in time order within a batch (decision 0054)
                alive = sorted(alive, key=_event_time)
            kept: list[Working] = []
            for working in alive:
                try:
                    outcome = run(working)
                except Exception as exc:
                    failed.append(Failed(working, name, exc))
                    continue
                if outcome is None:
                    kept.append(working)
                else:
                    drops[(working.out.site_id, outcome.reason)] += 1
            alive = kept
            self._timers[name].observe(time.perf_counter() - began)
        return alive
