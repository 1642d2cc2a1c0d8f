"""The in-memory store: the reference semantics every SQL adapter must reproduce exactly.

Plain lists and dicts, no cleverness, so that each metric reads like its definition in
``hitstream.domain.stats``. It is the test double of the store port: only tests and
``bootstrap`` (for ``memory://``) import it. The contract suite runs the same tests against
this store and the SQL ones.

The rules it follows (which events match, property values, how metrics are computed) are in
``hitstream.domain.measures`` and ``hitstream.domain.stats``, shared with every adapter; this
store only keeps the data and applies them without an index or a shortcut.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from hitstream.domain import goals
from hitstream.domain.events import FOLLOW_UP, EventType, ProcessedEvent, Session, is_engagement
from hitstream.domain.funnels import reached
from hitstream.domain.measures import (
    check_filters,
    check_metrics,
    check_property,
    metric_values,
    percentile_cont,
    prop_text,
    reads_engagement,
)
from hitstream.domain.rollups import PROP_KEYS_PER_SITE
from hitstream.domain.sites import check_forgotten_user
from hitstream.domain.stats import (
    EVENT_PROPERTIES,
    PROP_PREFIX,
    SESSION_PROPERTIES,
    BreakdownRow,
    Filter,
    StatsQuery,
    TimeseriesPoint,
    breakdown_order,
    bucket_of,
    bucket_starts,
)
from hitstream.domain.visitors import user_hash
from hitstream.errors import QueryError, StoreRefused, StoreUnavailable
from hitstream.stores.base import Store, WriteBatch, check_fence
from hitstream.stores.memory_registry import MemoryRegistry

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_PAGEVIEW: Final = EventType.PAGEVIEW.value


def _check_int(value: int | None, what: str) -> None:
    if value is not None and not INT64_MIN <= value <= INT64_MAX:
        raise StoreRefused("write", f"{what}={value} does not fit a 64-bit column")


def _check_batch(batch: WriteBatch) -> None:
    for event in batch.events:
        for name in (
            "timestamp",
            "received_at",
            "screen_width",
            "duration_ms",
            "load_time_ms",
            "engaged_ms",
            "scroll_depth",
        ):
            _check_int(getattr(event, name), f"event.{name}")
    for session in batch.sessions:
        for name in ("started_at", "last_seen", "pageviews", "events"):
            _check_int(getattr(session, name), f"session.{name}")
    for partition, offset in batch.positions.items():
        _check_int(partition, "partition")
        _check_int(offset, "offset")
    for count in batch.drops.values():
        _check_int(count, "drop count")


class MemoryStore(Store, MemoryRegistry):
    name = "memory"

    def __init__(self) -> None:
        MemoryRegistry.__init__(self)
        self._events: dict[str, ProcessedEvent] = {}
        self._sessions: dict[tuple[str, str], Session] = {}
        self._positions: dict[tuple[str, int], int] = {}
        self._versions: dict[str, int] = {}
        self._drops: dict[tuple[str, str], int] = {}
        self._closed = False
        self.available = True
        """Switch off to make every call fail with ``StoreUnavailable`` (outage drills)."""

    def _ensure(self) -> None:
        if not self.available or self._closed:
            raise StoreUnavailable("memory store is switched off or closed")

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def migrate(self) -> list[str]:
        self._ensure()
        return []

    async def check(self) -> None:
        self._ensure()

    async def positions(self, stream: str) -> dict[int, int]:
        self._ensure()
        return {p: o for (s, p), o in self._positions.items() if s == stream}

    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        self._ensure()
        return {event_id for event_id in event_ids if event_id in self._events}

    async def write(self, batch: WriteBatch) -> None:
        self._ensure()
        _check_batch(batch)  # everything that can fail fails before the first change
        check_fence(batch.stream, await self.positions(batch.stream), batch.starts)
        sites: set[str] = set()
        for event in batch.events:
            sites.add(event.site_id)
            if event.event_id not in self._events:
                self._events[event.event_id] = replace(event, props=dict(event.props))
        for session in batch.sessions:
            sites.add(session.site_id)
            self._sessions[(session.site_id, session.session_id)] = copy.copy(session)
        for (site_id, reason), count in batch.drops.items():
            sites.add(site_id)
            self._drops[(site_id, reason)] = self._drops.get((site_id, reason), 0) + count
        for site_id in sites:
            self._versions[site_id] = self._versions.get(site_id, 0) + 1
        for partition, offset in batch.positions.items():
            self._positions[(batch.stream, partition)] = offset

    async def open_sessions(self, since_ms: int) -> list[Session]:
        self._ensure()
        found = [copy.copy(s) for s in self._sessions.values() if s.last_seen >= since_ms]
        return sorted(found, key=lambda s: (s.site_id, s.session_id))

    async def visits_of(
        self, site_visitors: Sequence[tuple[str, str]], since_ms: int
    ) -> list[Session]:
        self._ensure()
        wanted = set(site_visitors)
        found = [
            copy.copy(s)
            for s in self._sessions.values()
            if s.last_seen >= since_ms and (s.site_id, s.visitor_id) in wanted
        ]
        return sorted(found, key=lambda s: (s.site_id, s.session_id))

    async def newest_visit_ms(self) -> int | None:
        self._ensure()
        return max((s.last_seen for s in self._sessions.values()), default=None)

    # -- stats ---------------------------------------------------------------------------

    def _value(self, prop: str, event: ProcessedEvent) -> str | None:
        """The property's value for an event; None when it has none (entry/exit, no row)."""
        if prop.startswith(PROP_PREFIX):
            return prop_text(event.props.get(prop[len(PROP_PREFIX) :]))
        if prop in SESSION_PROPERTIES:
            session = self._sessions.get((event.site_id, event.session_id))
            return None if session is None else str(getattr(session, SESSION_PROPERTIES[prop]))
        return str(getattr(event, EVENT_PROPERTIES[prop]))

    def _passes(self, flt: Filter, event: ProcessedEvent, query: StatsQuery) -> bool:
        if flt.property == goals.GOAL_PROPERTY:
            return goals.passes(flt.op, flt.values, query.goals, event)
        return flt.matches(self._value(flt.property, event))

    def _matching(self, query: StatsQuery) -> list[ProcessedEvent]:
        check_filters(query.filters)
        engagement = reads_engagement(query.metrics)
        return [
            event
            for event in self._events.values()
            if event.site_id == query.site_id
            and query.range.start <= event.timestamp < query.range.end
            and (engagement or not is_engagement(event.type))
            and all(self._passes(flt, event, query) for flt in query.filters)
        ]

    def _metrics(self, matched: list[ProcessedEvent], metrics: Sequence[str]) -> dict[str, float]:
        engaged = [e for e in matched if is_engagement(e.type)]
        events = [e for e in matched if not is_engagement(e.type)]
        timed = [e.duration_ms for e in events if e.duration_ms is not None]
        scrolled = [e.scroll_depth for e in engaged if e.scroll_depth is not None]
        visits = {(e.site_id, e.session_id) for e in events if e.session_id}
        rows = [self._sessions[key] for key in visits if key in self._sessions]
        loads = sorted(
            e.load_time_ms for e in events if e.type == _PAGEVIEW and e.load_time_ms is not None
        )
        return metric_values(
            metrics,
            visitors=len({e.visitor_id for e in events}),
            visits=len(visits),
            pageviews=sum(1 for e in events if e.type == _PAGEVIEW),
            events=len(events),
            measured=len(rows),
            bounces=sum(1 for s in rows if s.is_bounce),
            duration_ms=sum(s.duration_ms for s in rows),
            p50=percentile_cont(loads, 0.5),
            p95=percentile_cont(loads, 0.95),
            engaged_ms=sum(e.engaged_ms or 0 for e in engaged),
            engaged_n=sum(1 for e in engaged if e.engaged_ms is not None and e.name != FOLLOW_UP),
            scroll_sum=sum(scrolled),
            scroll_n=len(scrolled),
            duration_sum=sum(timed),
            duration_n=len(timed),
        )

    async def aggregate(self, query: StatsQuery) -> dict[str, float]:
        self._ensure()
        check_metrics(query.metrics)
        return self._metrics(self._matching(query), query.metrics)

    async def timeseries(self, query: StatsQuery) -> list[TimeseriesPoint]:
        self._ensure()
        check_metrics(query.metrics)
        starts = bucket_starts(query)
        buckets: defaultdict[int, list[ProcessedEvent]] = defaultdict(list)
        for event in self._matching(query):
            start = bucket_of(starts, event.timestamp)
            if start is not None:
                buckets[start].append(event)
        return [TimeseriesPoint(s, self._metrics(buckets[s], query.metrics)) for s in starts]

    async def breakdown(self, query: StatsQuery) -> list[BreakdownRow]:
        self._ensure()
        check_metrics(query.metrics)
        check_property(query.property)
        if not query.metrics:
            raise QueryError("metrics", "a breakdown needs at least one metric")
        groups: defaultdict[str, list[ProcessedEvent]] = defaultdict(list)
        for event in self._matching(query):
            value = self._value(query.property, event)
            if value is not None:
                groups[value].append(event)
        rows = [BreakdownRow(v, self._metrics(evs, query.metrics)) for v, evs in groups.items()]
        rows.sort(key=lambda row: breakdown_order(query.metrics, row.results, row.value))
        return rows[: query.limit]

    async def events_page(
        self, site_id: str, start_ms: int, end_ms: int, after: tuple[int, str] | None, limit: int
    ) -> list[ProcessedEvent]:
        self._ensure()
        found = sorted(
            (
                e
                for e in self._events.values()
                if e.site_id == site_id
                and start_ms <= e.timestamp < end_ms
                and (after is None or (e.timestamp, e.event_id) > tuple(after))
            ),
            key=lambda e: (e.timestamp, e.event_id),
        )[: max(limit, 0)]
        return [replace(e, props={k: prop_text(v) for k, v in e.props.items()}) for e in found]

    async def latest_events(
        self, site_id: str, start_ms: int, end_ms: int, limit: int
    ) -> list[ProcessedEvent]:
        self._ensure()
        found = sorted(
            (
                e
                for e in self._events.values()
                if e.site_id == site_id and start_ms <= e.timestamp < end_ms
            ),
            key=lambda e: (e.timestamp, e.event_id),
        )
        newest = found[max(len(found) - max(limit, 0), 0) :]
        return [replace(e, props={k: prop_text(v) for k, v in e.props.items()}) for e in newest]

    async def funnel(
        self, query: StatsQuery, steps: tuple[Filter, ...], window_ms: int | None
    ) -> list[int]:
        self._ensure()
        check_filters(steps)
        visits: defaultdict[str, list[ProcessedEvent]] = defaultdict(list)
        for event in self._matching(query):
            if event.session_id:
                visits[event.session_id].append(event)
        reached_by: list[set[str]] = [set() for _ in steps]
        for events in visits.values():
            events.sort(key=lambda e: (e.timestamp, e.event_id))
            flagged = [(e.timestamp, [self._passes(s, e, query) for s in steps]) for e in events]
            # the visit's visitors: of its events that match a step (a visit has one, as a rule)
            who = {e.visitor_id for e, (_, hits) in zip(events, flagged, strict=True) if any(hits)}
            for i in range(reached(flagged, window_ms)):
                reached_by[i].update(who)
        return [len(found) for found in reached_by]

    # -- bookkeeping ---------------------------------------------------------------------

    async def data_version(self, site_id: str) -> int:
        self._ensure()
        return self._versions.get(site_id, 0)

    async def sites(self) -> list[str]:
        self._ensure()
        return sorted(self._versions)

    async def prop_keys(self, site_id: str) -> list[str]:
        self._ensure()
        found: dict[str, None] = {}
        ordered = sorted(
            (e for e in self._events.values() if e.site_id == site_id and e.props),
            key=lambda e: (e.timestamp, e.event_id),
        )
        for e in ordered:
            for key in e.props:
                if len(found) < PROP_KEYS_PER_SITE:
                    found.setdefault(key)
        return list(found)

    async def drop_counts(self, site_id: str | None = None) -> dict[str, int]:
        self._ensure()
        counts: defaultdict[str, int] = defaultdict(int)
        for (site, reason), count in self._drops.items():
            if site_id is None or site == site_id:
                counts[reason] += count
        return dict(counts)

    async def count_events(self, site_id: str | None = None) -> int:
        self._ensure()
        return sum(1 for e in self._events.values() if site_id is None or e.site_id == site_id)

    async def delete_before(self, cutoff_ms: int) -> int:
        self._ensure()
        old_events = [k for k, e in self._events.items() if e.timestamp < cutoff_ms]
        old_sessions = [k for k, s in self._sessions.items() if s.last_seen < cutoff_ms]
        touched = {self._events[k].site_id for k in old_events} | {k[0] for k in old_sessions}
        for event_id in old_events:
            del self._events[event_id]
        for key in old_sessions:
            del self._sessions[key]
        for site_id in touched:
            self._versions[site_id] = self._versions.get(site_id, 0) + 1
        return len(old_events)

    def _bump_sites(self, sites: set[str]) -> None:
        for site_id in sites:
            self._versions[site_id] = self._versions.get(site_id, 0) + 1

    async def delete_site_before(self, site_id: str, cutoff_ms: int) -> int:
        self._ensure()
        old = [
            k for k, e in self._events.items() if e.site_id == site_id and e.timestamp < cutoff_ms
        ]
        visits = [
            k for k, s in self._sessions.items() if k[0] == site_id and s.last_seen < cutoff_ms
        ]
        for event_id in old:
            del self._events[event_id]
        for key in visits:
            del self._sessions[key]
        if old or visits:
            self._bump_sites({site_id})
        return len(old)

    async def forget_user(self, site_id: str, user_id: str, at_ms: int) -> int:
        check_forgotten_user(user_id)  # "" is every anonymous event of the site
        self._ensure()
        self._forgotten[(site_id, user_hash(site_id, user_id))] = at_ms
        gone = [e for e in self._events.values() if e.site_id == site_id and e.user_id == user_id]
        for event in gone:
            del self._events[event.event_id]
            self._sessions.pop((site_id, event.session_id), None)
        self._bump_sites({site_id})
        self._bump()  # processors reload their open visits (services/processor.py)
        return len(gone)

    def _delete_site_data(self, site_id: str) -> None:
        for event_id in [k for k, e in self._events.items() if e.site_id == site_id]:
            del self._events[event_id]
        for key in [k for k in self._sessions if k[0] == site_id]:
            del self._sessions[key]
        for key in [k for k in self._drops if k[0] == site_id]:
            del self._drops[key]
        self._bump_sites({site_id})
