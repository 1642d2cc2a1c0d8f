"""Exact rollups per half hour, as pure Python: what a store keeps so that stats need no scan.

Time is cut into half-hour *periods* (``SLOT``; "hour" in the SQL column names, for short).
The stats of a range are sums except for two distinct counts: visitors and visits. Those stay
exact, for any range of whole periods, through one rule: an entity (a visitor, or a visit) is
counted at every period it was seen in, *together with the previous period it was seen in*
(``prev``, or ``NONE``). Over the periods ``[a, b)`` it is then counted exactly once by summing
the rows whose ``hour`` lies in ``[a, b)`` and whose ``prev < a``: its first period in the
range. A timeseries sums each bucket the same way with the bucket's start. The same holds per
value of every property (``page = /pricing``, ``country = DE`` ...): the entity's periods under
that value get their own chain.

Rows of ``Counts`` are keyed ``(site, property, value, hour, prev)`` and hold ``FIELDS``. The
whole-site totals are the property ``""`` with value ``""``. Pageviews and events are plain
sums (on any row of their period: they are summed whatever the ``prev``); a visit also carries
whether its row exists (measured), whether it bounced and its duration, so bounce rate and
visit duration come out of the same rows.

What the store keeps besides the counts is, per ``(site, visitor, visit, period)``, which
property values the events of that period had and how many pageviews/events each (``Slot``).
A write recomputes the contribution of every visit and visitor it touches from their slots and
visit rows before and after, and adds the difference: the counts always equal the sum of every
entity's contribution over what is stored, so late events, duplicates, a visit whose exit page
changes, or a visit row that arrives in a later batch all end exact.

Entry and exit pages belong to the visit row, not to events: a slot's events count under the
current entry/exit page of its visit, and only when the visit has a row (as the raw queries
join).

Custom properties: an event without a key counts under ``""`` for every key there could be,
which no finite set of rows can hold. So a site rolls up the keys it registered (the first
``PROP_KEYS_PER_SITE`` it sent), each from ``prop_from``: the period after the site's newest
event stored when the key was registered. Every event counts under each registered key of its
site (``""`` when it lacks it), and every event stored in or after a key's first period was
stored after its registration, so a range starting at or after it is exact: an entity's
first period in the range still has ``prev`` below the range, whether its earlier periods
(before the key was registered) count under the key or not. Ranges that start before scan.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final

from hitstream.domain.events import FOLLOW_UP, ProcessedEvent, Session
from hitstream.domain.goals import GOAL_PROPERTY
from hitstream.domain.measures import prop_text
from hitstream.domain.stats import EVENT_PROPERTIES, PROP_PREFIX, SESSION_PROPERTIES, StatsQuery

SLOT: Final = 1_800_000
"""The grain: half hours, so that days in every whole- and half-hour time zone (India,
Iran, Newfoundland, South Australia ...) start on a slot boundary. The SQL column that holds
a slot's start is called ``hour``."""
NONE: Final = -(2**63)
"""``prev`` of an entity's first hour: before every other hour."""
TOTAL: Final = ("", "")
EVENT_DIMS: Final = tuple(sorted(EVENT_PROPERTIES.items()))
"""(property, ProcessedEvent attribute) of every event property that is rolled up."""
SESSION_DIMS: Final = tuple(sorted(SESSION_PROPERTIES.items()))
DIMS: Final = frozenset(EVENT_PROPERTIES) | frozenset(SESSION_PROPERTIES)
"""Every property a breakdown can read from the rollups."""

Member = tuple[str, str]
"""(property, value); ``TOTAL`` for the site as a whole."""
Key = tuple[str, str, str, int, int]
"""(site, property, value, hour, prev)."""
SlotKey = tuple[str, str, str, int]
"""(site, visitor, visit, hour)."""


def slot_of(ts: int) -> int:
    """The start of the slot that holds ``ts`` (floor, also before 1970)."""
    return ts // SLOT * SLOT


def slot_after(ts: int) -> int:
    """The first slot start at or after ``ts``."""
    return -(-ts // SLOT) * SLOT


def slot_starts(starts: Sequence[int]) -> list[int]:
    """Bucket starts as the rollups group slots: the first bucket from the slot holding its
    start (a range may start inside a half hour, e.g. local midnight in a quarter-hour time
    zone: the rollup path is taken only when no stored event of that slot lies before the
    range), the others whole half hours already. The first slot was dropped: the day's first
    15 minutes were missing from a one-day series in Kathmandu or Chatham."""
    return [slot_of(starts[0]), *starts[1:]] if starts else []


FIELDS: Final = ("visitors", "visits", "measured", "bounces", "duration", "pageviews", "events")
"""The numbers of a counts row, in this order."""
_VISITORS, _VISITS, _MEASURED, _BOUNCES, _DURATION, _PAGEVIEWS, _EVENTS = range(len(FIELDS))
Counts = dict[Key, list[int]]
"""key -> numbers in ``FIELDS`` order."""


@dataclass(slots=True)
class Slot:
    """What one visitor's events in one visit and one period had: how many events, and how
    many pageviews, had each member."""

    site: str
    visitor: str
    visit: str
    hour: int
    events: Counter[Member] = field(default_factory=Counter)
    pageviews: Counter[Member] = field(default_factory=Counter)

    @property
    def key(self) -> SlotKey:
        return (self.site, self.visitor, self.visit, self.hour)

    def add_event(
        self, event: ProcessedEvent, keys: Sequence[str] = (), segments: SiteSegments = None
    ) -> None:
        members = event_members(event, keys, segments)
        self.events.update(members)  # counted in C: this runs for every event and property
        if event.type == "pageview":
            self.pageviews.update(members)

    def copy(self) -> Slot:
        return Slot(*self.key, Counter(self.events), Counter(self.pageviews))


_EVENT_PROPS: Final = tuple(prop for prop, _ in EVENT_DIMS)
_event_values = attrgetter(*(attribute for _, attribute in EVENT_DIMS))


def event_members(
    event: ProcessedEvent, keys: Sequence[str] = (), segments: SiteSegments = None
) -> list[Member]:
    """The (property, value) pairs ``event`` counts in: every event property, the totals, and
    for each rolled-up custom property key of its site (``keys``) ``prop:<key>`` with the
    event's value of it, ``""`` when it has none (what a ``prop:`` breakdown groups by). For
    each segment of its site (``segments``) the event is in, its other members again under
    the segment's properties (``segment_dim``)."""
    members = list(zip(_EVENT_PROPS, _event_values(event), strict=True))
    members.append(TOTAL)
    if keys:
        props = event.props
        members.extend((PROP_PREFIX + key, prop_text(props.get(key))) for key in keys)
    if segments:
        own = dict(members)
        for prop, values in segments.items():
            value = own.get(prop)
            if value is not None and value in values:
                members.extend(
                    (segment_dim(prop, value, other), v)
                    for other, v in own.items()
                    if other and other != prop
                )
    return members


def only_value(query: StatsQuery) -> tuple[str, str] | None:
    """(property, value) when the query's one filter is ``property == value``: its rows are
    the rollup rows of that value (the same events, visits and visitors a breakdown by the
    property counts under it); None for any other filter set."""
    if len(query.filters) != 1:
        return None
    only = query.filters[0]
    if only.op != "==" or len(only.values) != 1 or only.property == GOAL_PROPERTY:
        return None
    return only.property, only.values[0]


# -- segments: breakdowns under a filter --------------------------------------------------

SEGMENTS_PER_SITE: Final = 16
"""How many segments (``property == value`` filters) a site rolls up: each adds the other
members again to every event in it, so the write cost grows with them; the others scan."""
SEGMENT_PREFIX: Final = "seg:"
Segment = tuple[str, str]
"""(property, value) of a filter ``property == value`` whose breakdowns are rolled up."""
SiteSegments = Mapping[str, frozenset[str]] | None
"""property -> the values of it that are segments of one site."""
Segments = Mapping[str, Mapping[str, frozenset[str]]]
"""site -> its ``SiteSegments``."""


@functools.lru_cache(maxsize=8192)
def segment_dim(prop: str, value: str, group: str) -> str:
    """The rollup property holding a breakdown by ``group`` of the events where ``prop`` is
    ``value``: a JSON array after ``seg:``, so no two segments and groups share one."""
    text = json.dumps([prop, value, group], ensure_ascii=False, separators=(",", ":"))
    return SEGMENT_PREFIX + text


def segment_of(query: StatsQuery, group: str | None) -> Segment | None:
    """The segment whose rows answer a breakdown by ``group`` under the query's filters: one
    ``property == value`` filter on an event property or a custom one, and a group that is
    another rolled-up property; None for any other shape."""
    only = only_value(query)
    if only is None or group is None or group == only[0]:
        return None
    prop = only[0]
    if prop not in EVENT_PROPERTIES and not prop.startswith(PROP_PREFIX):
        return None
    if group not in DIMS and not group.startswith(PROP_PREFIX):
        return None
    return only


SEGMENT_IDLE_MS: Final = 86_400_000
"""A segment not asked for a day gives its place to a new one that does not fit beside it
(``make_room``): the filters in use keep theirs, one-off clicks do not hold them."""
SEGMENT_TOUCH_MS: Final = 3_600_000
"""A segment's ``asked_at`` is written at most once an hour."""


def segment_dims(segment: Segment, keys: Iterable[str] = ()) -> list[str]:
    """Every rollup property of ``segment``: one per property it can be broken down by (the
    built-in ones and the site's custom property ``keys``)."""
    groups = [*sorted(DIMS), *(PROP_PREFIX + key for key in sorted(keys))]
    return [segment_dim(*segment, group) for group in groups if group != segment[0]]


SEGMENT_BUDGET: Final = 2.0
"""The most a site's segments may add to its writes, in events: the sum of their shares of
the site's events over its last stored day. Each event in a segment counts its members again,
so 2.0 bounds the extra members at about twice the site's own: 16 country or page filters, or
two filters that hold every event (a hostname, ``user_id==""`` on a site without users)."""


def make_room(
    asked: Mapping[Segment, int], shares: Mapping[Segment, float], share: float, now_ms: int
) -> list[Segment] | None:
    """The segments to drop so that a new one holding ``share`` of the site's events fits in
    ``SEGMENTS_PER_SITE`` and ``SEGMENT_BUDGET`` (``asked``: each segment -> when it was last
    asked; ``shares``: each one's share): the least recently asked first, only those not asked
    for ``SEGMENT_IDLE_MS``. None when it cannot fit."""
    idle = sorted((at, segment) for segment, at in asked.items() if at <= now_ms - SEGMENT_IDLE_MS)
    kept, used, dropped = len(asked), sum(shares.get(s, 0.0) for s in asked), []

    def fits() -> bool:
        return kept < SEGMENTS_PER_SITE and used + share <= SEGMENT_BUDGET + 1e-9

    for _, segment in idle:
        if fits():
            break
        dropped.append(segment)
        kept, used = kept - 1, used - shares.get(segment, 0.0)
    return dropped if fits() else None


def segments_of(known: Mapping[str, Mapping[Segment, int]]) -> dict[str, dict[str, frozenset[str]]]:
    """The ``Segments`` of a registry (site -> segment -> its first period)."""
    found: dict[str, dict[str, set[str]]] = {}
    for site, segments in known.items():
        for prop, value in segments:
            found.setdefault(site, {}).setdefault(prop, set()).add(value)
    return {
        site: {prop: frozenset(values) for prop, values in props.items()}
        for site, props in found.items()
    }


# -- custom properties ---------------------------------------------------------------------

PROP_KEYS_PER_SITE: Final = 32
"""How many custom property keys of a site are rolled up (the first seen): each adds a member
to every event of the site, so the write cost grows with them; breakdowns by the others scan."""
PropKeys = Mapping[str, Sequence[str]]
"""site -> its rolled-up custom property keys (sorted)."""


def new_prop_keys(
    events: Iterable[ProcessedEvent], known: Mapping[str, Mapping[str, int]]
) -> dict[str, list[str]]:
    """site -> custom property keys seen in ``events`` that the site does not roll up yet,
    within ``PROP_KEYS_PER_SITE`` (in order of appearance). ``known``: site -> key -> the
    period its rollups start (``prop_from``)."""
    found: dict[str, list[str]] = {}
    for e in events:
        if not e.props:
            continue
        have = known.get(e.site_id, {})
        for key in e.props:
            new = found.setdefault(e.site_id, [])
            if key not in have and key not in new and len(have) + len(new) < PROP_KEYS_PER_SITE:
                new.append(key)
    return {site: keys for site, keys in found.items() if keys}


def prop_from(newest_ts: int | None) -> int:
    """The first period a key registered now is rolled up in: the one after the period of the
    site's newest stored event (every event stored from then on counts in the key's rollups;
    before it, stored events were counted without it). ``NONE`` for a site with no events."""
    return NONE if newest_ts is None else slot_of(newest_ts) + SLOT


def keys_of(known: Mapping[str, Mapping[str, int]]) -> dict[str, tuple[str, ...]]:
    """The ``PropKeys`` of a registry (site -> key -> prop_from)."""
    return {site: tuple(sorted(keys)) for site, keys in known.items() if keys}


@dataclass(frozen=True, slots=True)
class VisitFacts:
    """What a visit row adds: its entry/exit pages, bounce and duration."""

    entry_page: str
    exit_page: str
    bounce: bool
    duration_ms: int

    @classmethod
    def of(cls, session: Session) -> VisitFacts:
        return cls(session.entry_page, session.exit_page, session.is_bounce, session.duration_ms)

    def members(self) -> Iterator[Member]:
        for prop, attribute in SESSION_DIMS:
            yield prop, str(getattr(self, attribute))


Facts = Mapping[tuple[str, str], VisitFacts]
"""(site, visit) -> facts of its row, for visits that have one."""


def _members(slot: Slot, facts: Facts, segments: Segments | None) -> list[tuple[Member, int, int]]:
    """(member, pageviews, events) of one slot, visit-row members included (also under each
    segment of ``segments`` that has events in the slot)."""
    pageviews = slot.pageviews
    members = [(m, pageviews.get(m, 0), n) for m, n in slot.events.items()]
    extra = facts.get((slot.site, slot.visit)) if slot.visit else None
    if extra is not None and TOTAL in slot.events:
        totals = pageviews.get(TOTAL, 0), slot.events[TOTAL]
        visit_members = list(extra.members())
        members += [(m, *totals) for m in visit_members]
        site_segments = segments.get(slot.site) if segments else None
        for prop, values in (site_segments or {}).items():
            for value in values:
                n = slot.events.get((prop, value))
                if n:
                    views = pageviews.get((prop, value), 0)
                    members += [
                        ((segment_dim(prop, value, q), w), views, n) for q, w in visit_members
                    ]
    return members


def _some_members(
    slot: Slot, facts: Facts, segments: Segments | None, wanted: AbstractSet[Member]
) -> list[tuple[Member, int, int]]:
    """The entries of ``_members`` whose member is in ``wanted``, looked up one by one when
    ``wanted`` is the smaller (a write's few members in a slot of a long visit's many)."""
    events = slot.events
    if 2 * len(wanted) > len(events):
        return [entry for entry in _members(slot, facts, segments) if entry[0] in wanted]
    pageviews = slot.pageviews
    found = [(m, pageviews.get(m, 0), n) for m in wanted if (n := events.get(m))]
    extra = facts.get((slot.site, slot.visit)) if slot.visit else None
    if extra is None or TOTAL not in events:
        return found
    totals = pageviews.get(TOTAL, 0), events[TOTAL]
    visit_members = list(extra.members())
    found += [(m, *totals) for m in visit_members if m in wanted]
    site_segments = segments.get(slot.site) if segments else None
    for prop, values in (site_segments or {}).items():
        for value in values:
            n = events.get((prop, value))
            if n:
                views = pageviews.get((prop, value), 0)
                for q, w in visit_members:
                    member = (segment_dim(prop, value, q), w)
                    if member in wanted:
                        found.append((member, views, n))
    return found


def _hours(
    slots: Iterable[Slot],
    facts: Facts,
    segments: Segments | None = None,
    wanted: AbstractSet[Member] | None = None,
) -> Hours:
    """member -> period -> [pageviews, events] over the slots (``_members``), of the members
    in ``wanted`` only when given."""
    found: Hours = defaultdict(dict)
    for slot in slots:
        hour = slot.hour
        entries = (
            _members(slot, facts, segments)
            if wanted is None
            else _some_members(slot, facts, segments, wanted)
        )
        for member, views, events in entries:
            counts = found[member].get(hour)
            if counts is None:
                found[member][hour] = [views, events]
            else:
                counts[0] += views
                counts[1] += events
    return found


def _hours_from(
    slots: Sequence[Slot],
    facts: Facts,
    segments: Segments | None,
    since: int,
    only: AbstractSet[Member] | None = None,
) -> Hours:
    """``_hours`` of the slots of periods ``since`` and later (of the members in ``only``
    when given), each member also holding the last period before ``since`` it had (its
    numbers left at zero: only a chain's ``prev`` reads it). Earlier slots are read newest
    first until every member has its period."""
    found = _hours([s for s in slots if s.hour >= since], facts, segments, only)
    wanted = set(found)
    older = sorted((s for s in slots if s.hour < since), key=attrgetter("hour"), reverse=True)
    for slot in older:
        if not wanted:
            break
        entries = (
            _members(slot, facts, segments)
            if only is None
            else _some_members(slot, facts, segments, wanted)
        )
        for member, _, _ in entries:
            if member in wanted:
                found[member].setdefault(slot.hour, [0, 0])
                wanted.discard(member)
    return found


def _row(counts: Counts, key: Key) -> list[int]:
    row = counts.get(key)
    if row is None:
        row = counts[key] = [0] * len(FIELDS)
    return row


Hours = dict[Member, dict[int, list[int]]]
"""member -> period -> [pageviews, events] of a set of slots (``_hours``)."""


def visit_contribution(
    counts: Counts,
    site: str,
    visit: str,
    hours_of: Hours,
    facts: Facts,
    sign: int,
    *,
    visitor_too: bool = False,
) -> None:
    """Add (``sign`` 1) or take back (-1) what one visit's slots count. ``visit == ""`` is the
    visit-less events of one visitor: their pageviews and events, no visit. ``visitor_too``:
    the visitor has no other slots, so its chains are the visit's (one pass for both)."""
    facts_row = facts.get((site, visit)) if visit else None
    measured = sign if facts_row is not None else 0
    bounces = sign if facts_row is not None and facts_row.bounce else 0
    duration = sign * facts_row.duration_ms if facts_row is not None else 0
    visitors = sign if visitor_too else 0
    for (prop, value), hours in hours_of.items():
        prev = NONE
        for hour in sorted(hours):
            pageviews, events = hours[hour]
            # sums may sit on any row of their hour: the chain's, so a visit adds one row an hour
            row = _row(counts, (site, prop, value, hour, prev))
            row[_PAGEVIEWS] += sign * pageviews
            row[_EVENTS] += sign * events
            row[_VISITORS] += visitors
            if visit:
                row[_VISITS] += sign
                row[_MEASURED] += measured
                row[_BOUNCES] += bounces
                row[_DURATION] += duration
            prev = hour


def _one_slot_contribution(
    counts: Counts,
    site: str,
    visit: str,
    hour: int,
    entries: Iterable[tuple[Member, int, int]],
    facts: Facts,
    sign: int,
    visitor_too: bool,
) -> None:
    """``visit_contribution`` of a visit that has one slot, at ``hour``, from its members'
    ``entries`` (``_members``, each member once): each member's chain is one row, the first
    of its chain. The same rows without ``_hours``'s per-member period maps and sorts (most
    visits are shorter than a period)."""
    facts_row = facts.get((site, visit)) if visit else None
    measured = sign if facts_row is not None else 0
    bounces = sign if facts_row is not None and facts_row.bounce else 0
    duration = sign * facts_row.duration_ms if facts_row is not None else 0
    visitors = sign if visitor_too else 0
    visits = sign if visit else 0
    for (prop, value), pageviews, events in entries:
        key = (site, prop, value, hour, NONE)
        row = counts.get(key)
        if row is None:
            counts[key] = [
                visitors,
                visits,
                measured,
                bounces,
                duration,
                sign * pageviews,
                sign * events,
            ]
        else:
            row[_PAGEVIEWS] += sign * pageviews
            row[_EVENTS] += sign * events
            row[_VISITORS] += visitors
            row[_VISITS] += visits
            row[_MEASURED] += measured
            row[_BOUNCES] += bounces
            row[_DURATION] += duration


def visitor_contribution(
    counts: Counts, site: str, hours_of: Hours, sign: int, since: int = NONE
) -> None:
    """Add or take back one visitor's chains (all its slots, any visit), from period
    ``since`` on: the rows of earlier periods are left out (a write that changes nothing
    before ``since`` takes them back and adds them again unchanged), each chain starting
    from its last period before ``since``."""
    for (prop, value), hours in hours_of.items():
        ordered = sorted(hours)
        start = bisect.bisect_left(ordered, since) if since != NONE else 0
        prev = ordered[start - 1] if start else NONE
        for hour in ordered[start:]:
            _row(counts, (site, prop, value, hour, prev))[_VISITORS] += sign
            prev = hour


@dataclass(slots=True)
class Change:
    """What a write changes: slots to store (whole) and counts to add."""

    slots: list[Slot]
    counts: Counts


@dataclass(slots=True)
class Touched:
    """The entities a batch touches, which the store must load before ``change``."""

    visits: set[tuple[str, str]]
    """(site, visit) of the fresh events and of the visit rows written (non-empty ids)."""
    visitors: set[tuple[str, str]]
    """(site, visitor) of the fresh events."""


def touched(events: Iterable[ProcessedEvent], sessions: Iterable[Session]) -> Touched:
    events = list(events)
    visits = {(e.site_id, e.session_id) for e in events if e.session_id}
    visits |= {(s.site_id, s.session_id) for s in sessions if s.session_id}
    return Touched(visits, {(e.site_id, e.visitor_id) for e in events})


def affected_visitors(found: Iterable[Slot], rows: Iterable[Session]) -> set[tuple[str, str]]:
    """Visitors whose chains a changed visit row can move (entry/exit pages): every visitor
    with a slot in one of these visits."""
    changed = {(s.site_id, s.session_id) for s in rows}
    return {(slot.site, slot.visitor) for slot in found if (slot.site, slot.visit) in changed}


def change(
    stored: Iterable[Slot],
    old_facts: Facts,
    events: Iterable[ProcessedEvent],
    sessions: Iterable[Session],
    visitors: set[tuple[str, str]],
    keys: PropKeys | None = None,
    segments: Segments | None = None,
    *,
    whole: bool = False,
) -> Change:
    """The counts to add when ``events`` (fresh: never stored before) and visit rows
    ``sessions`` are written on top of ``stored``; ``keys``: the custom property keys each
    site rolls up, ``segments`` its segments.

    Only what the write can change is walked (decision 0036). A visitor's chains from the
    first period the write changes for it (``changed_from``): before that its slots, before
    and after, are the same, and so is what they count; a visitor seen for months (an
    identified user) thus costs a write what its recent periods cost. And of each visit and
    visitor, only the chains of the members the write touches (``_Dirty``): the members of
    its fresh events and the visit rows' members; the other members' chains keep their
    periods, and when the visit row changes what every chain row of the visit carries
    (measured, bounce, duration) they get the difference on each row (``_carried``) without
    being walked twice. A visit of thousands of pages thus costs a write about one row per
    page rather than two walks of every page. ``whole``: walk every chain of every touched
    entity from its start (the reference the tests hold the shortcuts to).

    ``stored`` must hold every slot of the touched visits (``touched``) and of ``visitors``
    (the touched ones plus ``affected_visitors``); ``old_facts`` the stored visit row of every
    visit those slots name. What is taken back is computed from the state before, what is
    added from the state after: the difference is exact whatever the counts held.
    """
    events, sessions = list(events), list(sessions)
    before = {slot.key: slot for slot in stored}
    after = dict(before)  # a slot the events change is copied first: ``before`` stays
    changed: dict[SlotKey, Slot] = {}
    fresh: dict[tuple[str, str, str], set[Member]] = defaultdict(set)
    for event in events:
        key = (event.site_id, event.visitor_id, event.session_id, slot_of(event.timestamp))
        slot = changed.get(key)
        if slot is None:
            was = before.get(key)
            slot = after[key] = changed[key] = Slot(*key) if was is None else was.copy()
        slot.add_event(
            event,
            keys.get(event.site_id, ()) if keys else (),
            segments.get(event.site_id) if segments else None,
        )
    if not whole:  # the members the fresh events counted under: those whose counts moved
        for key, slot in changed.items():
            was = before.get(key)
            moved = fresh[_visit_of(*key[:3])]
            if was is None:
                moved.update(slot.events)
            else:
                old = was.events
                moved.update(m for m, n in slot.events.items() if old.get(m) != n)
    new_facts = dict(old_facts)
    for session in sessions:
        new_facts[(session.site_id, session.session_id)] = VisitFacts.of(session)

    visits = {_visit_of(e.site_id, e.visitor_id, e.session_id) for e in events}
    visits |= {(s.site_id, s.session_id, "") for s in sessions if s.session_id}
    since = {} if whole else changed_from(before.values(), events, sessions)
    together = _together(before, after, visits, visitors, since)
    dirty = None
    if not whole:
        dirty = _dirty(after, fresh, old_facts, new_facts, visits, visitors, segments, together)
    counts: Counts = {}
    _contribute(counts, before, old_facts, visits, visitors, -1, segments, since, together, dirty)
    _contribute(counts, after, new_facts, visits, visitors, 1, segments, since, together, dirty)
    if dirty is not None:
        had_slots = {(slot.site, slot.visit) for slot in before.values() if slot.visit}
        _carried_differences(counts, after, old_facts, new_facts, dirty, segments, had_slots)
    return Change(list(changed.values()), {k: v for k, v in counts.items() if any(v)})


def changed_from(
    stored: Iterable[Slot], events: Iterable[ProcessedEvent], sessions: Iterable[Session]
) -> dict[tuple[str, str], int]:
    """(site, visitor) -> the first period a write changes for that visitor: the period of
    its earliest fresh event, or of its earliest stored slot in a visit whose row the write
    replaces (the visit row's members count on every slot of the visit). Only visitors with
    a stored slot before that period are named: the others' chains are walked whole."""
    found: dict[tuple[str, str], int] = {}
    first: dict[tuple[str, str], int] = {}
    for event in events:
        key, hour = (event.site_id, event.visitor_id), slot_of(event.timestamp)
        if hour < found.get(key, hour + 1):
            found[key] = hour
    rows = {(s.site_id, s.session_id) for s in sessions if s.session_id}
    for slot in stored:
        key = (slot.site, slot.visitor)
        if slot.hour < first.get(key, slot.hour + 1):
            first[key] = slot.hour
        if (
            slot.visit
            and (slot.site, slot.visit) in rows
            and slot.hour < found.get(key, slot.hour + 1)
        ):
            found[key] = slot.hour
    return {key: hour for key, hour in found.items() if first.get(key, hour) < hour}


Owner = tuple[str, str]
"""(site, visitor)."""
VisitKey = tuple[str, str, str]
"""A visit as ``_visit_of`` names it."""


def _alone(state: Mapping[SlotKey, Slot], visitors: set[Owner]) -> dict[Owner, VisitKey]:
    """Visitors of ``visitors`` whose slots in ``state`` all belong to one visit that holds
    nobody else's slots -> that visit: their chains are the visit's."""
    visit_of: dict[Owner, VisitKey] = {}
    several: set[Owner] = set()
    holders: dict[VisitKey, set[str]] = defaultdict(set)
    for slot in state.values():
        visit = _visit_of(slot.site, slot.visitor, slot.visit)
        holders[visit].add(slot.visitor)
        owner = (slot.site, slot.visitor)
        if owner in visitors and visit_of.setdefault(owner, visit) != visit:
            several.add(owner)
    return {
        owner: visit
        for owner, visit in visit_of.items()
        if owner not in several and holders[visit] == {owner[1]}
    }


def _together(
    before: Mapping[SlotKey, Slot],
    after: Mapping[SlotKey, Slot],
    visits: set[VisitKey],
    visitors: set[Owner],
    since: Mapping[Owner, int],
) -> dict[Owner, VisitKey]:
    """Visitors counted in one pass with their visit, on both sides of a write alike: alone
    with a visit of the write after it, and before it either absent or alone with the same
    visit. Never one in ``since`` (its chains are walked from a period on, the visit's
    whole)."""
    was = _alone(before, visitors)
    return {
        owner: visit
        for owner, visit in _alone(after, visitors).items()
        if visit in visits and owner not in since and was.get(owner, visit) == visit
    }


@dataclass(slots=True)
class _Dirty:
    """The members a write walks, per visit and per visitor: the same on both sides, so
    what is left out is left out of both. A member left out of a visit keeps its periods in
    it (no fresh event had it, and it is no visit-row member), and one left out of a
    visitor keeps its periods in every visit of that visitor."""

    visits: dict[VisitKey, set[Member]]
    """Per visit: the members of its fresh events, its visit rows' members (old and new),
    and when its visitor counts with it (``_together``), the visitor's."""
    visitors: dict[Owner, set[Member]]
    """Per visitor: the members of its fresh events and the visit-row members of the
    write's visits it has slots in."""


def _row_members(facts: Iterable[VisitFacts | None], site_segments: SiteSegments) -> set[Member]:
    """The members visit rows add to a slot (``_members``): their own, and under every
    segment of the site."""
    own = {member for row in facts if row is not None for member in row.members()}
    found = set(own)
    for prop, values in (site_segments or {}).items():
        for value in values:
            found.update((segment_dim(prop, value, q), w) for q, w in own)
    return found


def _dirty(
    after: Mapping[SlotKey, Slot],
    fresh: Mapping[VisitKey, set[Member]],
    old_facts: Facts,
    new_facts: Facts,
    visits: set[VisitKey],
    visitors: set[Owner],
    segments: Segments | None,
    together: Mapping[Owner, VisitKey],
) -> _Dirty:
    dirty = _Dirty({visit: set(members) for visit, members in fresh.items()}, {})
    rows: dict[VisitKey, set[Member]] = {}
    for visit in visits:
        site, visit_id, _ = visit
        if visit_id:
            facts = (old_facts.get((site, visit_id)), new_facts.get((site, visit_id)))
            rows[visit] = _row_members(facts, segments.get(site) if segments else None)
            dirty.visits.setdefault(visit, set()).update(rows[visit])
    seen: set[tuple[Owner, VisitKey]] = set()  # a visitor's slots of one visit add it once
    for slot in after.values():
        owner = (slot.site, slot.visitor)
        if owner not in visitors:
            continue
        visit = _visit_of(slot.site, slot.visitor, slot.visit)
        wanted = dirty.visitors.setdefault(owner, set())
        if (owner, visit) not in seen:
            seen.add((owner, visit))
            wanted |= fresh.get(visit, set())
            wanted |= rows.get(visit, set())
    for owner, visit in together.items():
        dirty.visits.setdefault(visit, set()).update(dirty.visitors.get(owner, ()))
    return dirty


def _carried(row: VisitFacts | None) -> tuple[int, int, int]:
    """What a visit row adds to every chain row of its visit: measured, bounces, duration."""
    if row is None:
        return (0, 0, 0)
    return (1, int(row.bounce), row.duration_ms)


def _carried_differences(
    counts: Counts,
    after: Mapping[SlotKey, Slot],
    old_facts: Facts,
    new_facts: Facts,
    dirty: _Dirty,
    segments: Segments | None,
    had_slots: AbstractSet[tuple[str, str]],
) -> None:
    """For each visit whose row changed what its chain rows carry (``_carried``): add the
    difference on every chain row of the members the write did not walk (their periods are
    the same before and after). ``had_slots``: the (site, visit) of every slot before the
    write."""
    moved: dict[tuple[str, str], tuple[int, int, int]] = {}
    for visit in dirty.visits:
        site, visit_id, _ = visit
        # a visit with no slot before the write has only fresh slots: every member of them
        # was walked (the fresh events' and the visit rows'), none is left to carry
        if visit_id and (site, visit_id) in had_slots:
            old, new = (
                _carried(old_facts.get((site, visit_id))),
                _carried(new_facts.get((site, visit_id))),
            )
            if old != new:
                moved[(site, visit_id)] = (new[0] - old[0], new[1] - old[1], new[2] - old[2])
    if not moved:
        return
    hours_of: dict[tuple[str, str], dict[Member, set[int]]] = defaultdict(lambda: defaultdict(set))
    for slot in after.values():
        if slot.visit and (slot.site, slot.visit) in moved:
            walked = dirty.visits[(slot.site, slot.visit, "")]
            found = hours_of[(slot.site, slot.visit)]
            for member, _, _ in _members(slot, new_facts, segments):
                if member not in walked:
                    found[member].add(slot.hour)
    for visit_key, members in hours_of.items():
        site = visit_key[0]
        measured, bounces, duration = moved[visit_key]
        for (prop, value), hours in members.items():
            prev = NONE
            for hour in sorted(hours):
                row = _row(counts, (site, prop, value, hour, prev))
                row[_MEASURED] += measured
                row[_BOUNCES] += bounces
                row[_DURATION] += duration
                prev = hour


def _contribute(
    counts: Counts,
    state: Mapping[SlotKey, Slot],
    facts: Facts,
    visits: set[VisitKey],
    visitors: set[Owner],
    sign: int,
    segments: Segments | None = None,
    since: Mapping[Owner, int] | None = None,
    together: Mapping[Owner, VisitKey] | None = None,
    dirty: _Dirty | None = None,
) -> None:
    """Add (``sign`` 1) or take back (-1) what the ``visits`` and ``visitors`` count in
    ``state``: each visit's chains, and each visitor's (in the same pass as its visit's for
    a visitor in ``together``), a visitor's from its period in ``since`` on
    (``changed_from``; every period for a visitor not in it); of the members in ``dirty``
    only, when given."""
    by_visit: dict[VisitKey, list[Slot]] = defaultdict(list)
    by_visitor: dict[Owner, list[Slot]] = defaultdict(list)
    for slot in state.values():
        visit = _visit_of(slot.site, slot.visitor, slot.visit)
        if visit in visits:
            by_visit[visit].append(slot)
        if (slot.site, slot.visitor) in visitors:
            by_visitor[(slot.site, slot.visitor)].append(slot)
    together = together or {}
    for visit, slots in by_visit.items():
        site, visit_id, _ = visit
        both = together.get((site, slots[0].visitor)) == visit
        wanted = None if dirty is None else dirty.visits.get(visit, set())
        if wanted is not None and not wanted:
            continue
        if len(slots) == 1:
            slot = slots[0]
            entries = (
                _members(slot, facts, segments)
                if wanted is None
                else _some_members(slot, facts, segments, wanted)
            )
            _one_slot_contribution(
                counts, site, visit_id, slot.hour, entries, facts, sign, visitor_too=both
            )
            continue
        found = _hours(slots, facts, segments, wanted)
        visit_contribution(counts, site, visit_id, found, facts, sign, visitor_too=both)
    for owner, slots in by_visitor.items():
        if owner in together:
            continue
        only = None if dirty is None else dirty.visitors.get(owner, set())
        if only is not None and not only:
            continue
        start = since.get(owner, NONE) if since else NONE
        if start == NONE:
            visitor_contribution(counts, owner[0], _hours(slots, facts, segments, only), sign)
        else:
            found = _hours_from(slots, facts, segments, start, only)
            visitor_contribution(counts, owner[0], found, sign, start)


def take_back(stored: Iterable[Slot], facts: Facts, segments: Segments | None = None) -> Counts:
    """The counts to add (all negative) when every visitor of ``stored`` is deleted whole:
    ``stored`` must hold every slot of those visitors, ``facts`` the stored row of every
    visit they name (forgetting a user: their visits hold nobody else's events)."""
    state = {slot.key: slot for slot in stored}
    visits = {_visit_of(s.site, s.visitor, s.visit) for s in state.values()}
    visitors = {(s.site, s.visitor) for s in state.values()}
    together = {owner: visit for owner, visit in _alone(state, visitors).items() if visit in visits}
    counts: Counts = {}
    _contribute(counts, state, facts, visits, visitors, -1, segments, None, together)
    return {k: v for k, v in counts.items() if any(v)}


def _visit_of(site: str, visitor: str, visit: str) -> tuple[str, str, str]:
    """The visit a slot belongs to: its id, or for visit-less events the visitor's own."""
    return (site, visit, "") if visit else (site, "", visitor)


def slot_document(slot: Slot) -> dict[str, Any]:
    """A slot's members as a JSON-able document: ``""`` holds the totals ``[pageviews,
    events]``; each property holds its one value when every event of the slot had it (the
    common case: country, browser ... do not change within a period of a visit), else
    ``{value: [pageviews, events]}``."""
    total = [slot.pageviews.get(TOTAL, 0), slot.events.get(TOTAL, 0)]
    by_prop: dict[str, dict[str, list[int]]] = {}
    for member, events in slot.events.items():
        if member != TOTAL:
            by_prop.setdefault(member[0], {})[member[1]] = [slot.pageviews.get(member, 0), events]
    document: dict[str, Any] = {"": total}
    for prop, values in by_prop.items():
        only = next(iter(values.items())) if len(values) == 1 else None
        document[prop] = only[0] if only is not None and only[1] == total else values
    return document


def slot_from_document(key: SlotKey, document: Mapping[str, Any]) -> Slot:
    """The inverse of ``slot_document`` (also reads the first format: ``"prop:value"`` keys
    with ``[pageviews, events]``, the totals under ``":"``)."""
    slot = Slot(*key)

    def put(member: Member, counts: Sequence[int]) -> None:
        slot.events[member] = int(counts[1])
        if counts[0]:
            slot.pageviews[member] = int(counts[0])

    if ":" in document:  # the first format
        for text, counts in document.items():
            prop, _, value = text.partition(":")
            put((prop, value), counts)
        return slot
    total = document[""]
    put(TOTAL, total)
    for prop, values in document.items():
        if prop == "":
            continue
        for value, counts in ({values: total} if isinstance(values, str) else values).items():
            put((prop, value), counts)
    return slot


# -- plain sums the visit chains do not need -------------------------------------------------

SUMS: Final = ("engagements", "engaged", "engaged_n", "scroll", "scroll_n", "timed", "timed_n")
"""Per (site, event property, value, period): how many engagement events, the sums and counts
of their ``engaged_ms`` and ``scroll_depth``, and the sum and count of ``duration_ms`` over the
other events: what ``time_on_page``, ``scroll_depth`` and ``avg_duration`` divide (decision
0018). Plain sums of the events' own columns, so they need no slots; the visit-row
properties (entry and exit page) are not kept (a query asking these metrics by them scans)."""
SumKey = tuple[str, str, str, int]
"""(site, property, value, period)."""


def event_sums(
    events: Iterable[ProcessedEvent],
    sign: int = 1,
    keys: PropKeys | None = None,
    segments: Segments | None = None,
) -> dict[SumKey, list[int]]:
    """What ``events`` add to the ``SUMS`` of every member (``sign`` -1: take them back);
    ``keys``: the custom property keys each site rolls up, ``segments`` its segments."""
    found: dict[SumKey, list[int]] = {}
    for e in events:
        if e.type == "engagement":
            engaged, scroll = e.engaged_ms, e.scroll_depth
            parts: tuple[int, ...] = (
                1,
                engaged or 0,
                int(engaged is not None and e.name != FOLLOW_UP),
                scroll or 0,
                int(scroll is not None),
                0,
                0,
            )
        elif e.duration_ms is not None:
            parts = (0, 0, 0, 0, 0, e.duration_ms, 1)
        else:
            continue
        hour = slot_of(e.timestamp)
        site_keys = keys.get(e.site_id, ()) if keys else ()
        site_segments = segments.get(e.site_id) if segments else None
        for prop, value in event_members(e, site_keys, site_segments):
            key = (e.site_id, prop, value, hour)
            row = found.get(key)
            if row is None:
                found[key] = [sign * p for p in parts]
            else:
                for i, p in enumerate(parts):
                    row[i] += sign * p
    return {k: v for k, v in found.items() if any(v)}


def load_counts(events: Iterable[ProcessedEvent], sign: int = 1) -> dict[tuple[str, int, int], int]:
    """(site, period, load_time_ms) -> pageviews that had it: the load-time histograms."""
    found: dict[tuple[str, int, int], int] = {}
    for e in events:
        if e.type == "pageview" and e.load_time_ms is not None:
            key = (e.site_id, slot_of(e.timestamp), e.load_time_ms)
            found[key] = found.get(key, 0) + sign
    return found


class Histogram(Sequence[int]):
    """The ascending values behind ``(value, count)`` pairs, indexed without expanding them:
    what ``percentile_cont`` reads when a histogram stands for the values."""

    def __init__(self, pairs: Sequence[tuple[int, int]]) -> None:
        self._values = [value for value, _ in pairs]
        self._ends: list[int] = []
        total = 0
        for _, n in pairs:
            total += n
            self._ends.append(total)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index: Any) -> Any:
        return self._values[bisect.bisect_right(self._ends, index)]
