"""Sessions (visits): 30 minutes without an event from a visitor ends a visit.

The ``Sessionizer`` holds the open visits of the events it has seen, keyed by (site, visitor).
It is deterministic in the order of events it is given, which is the log order, so replaying
the log from stored positions with the sessions stored alongside gives the same visits again.
Acquisition (source, channel, referrer domain, UTM) is the visit's: set by its first event and
copied onto every later one. A visit that crosses midnight keeps going: the collector sends
yesterday's visitor hash too, and an open visit under that hash is continued under it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from hitstream.domain.events import EventType, ProcessedEvent, Session

SESSION_TIMEOUT_MS = 30 * 60 * 1000


def session_id_for(site_id: str, visitor_id: str, started_at: int) -> str:
    """A visit's id: its start in milliseconds (12 hex digits) then a 48-bit hash of site,
    visitor and start. Deterministic (a replay of the log names the visit again alike) and
    time-ordered, as event ids are: a store's index over visit ids takes new keys on its
    newest edge and a write touches only the recent part of it, where random ids made every
    write load the whole index into memory (decision 0034)."""
    digest = hashlib.blake2b(f"{site_id}\x1f{visitor_id}\x1f{started_at}".encode(), digest_size=6)
    return f"{started_at & 0xFFFF_FFFF_FFFF:012x}{digest.hexdigest()}"


_ATTRIBUTION = (
    "source",
    "channel",
    "referrer_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
)


def _attribute(event: ProcessedEvent, session: Session) -> None:
    """Acquisition is a property of the visit: every event of a visit carries the source,
    channel and campaign of its first event, so ``source==Google`` finds whole visits."""
    for name in _ATTRIBUTION:
        setattr(event, name, getattr(session, name))


NEVER: Final = -(2**63)
"""Before every time: ``forgotten_before`` when nothing is forgotten."""
HELD_PER_VISITOR = 4
"""Visits held per (site, visitor): the newest, and older ones a late event opened or
continued (an event sent hours late replaced the visitor's current visit, which the next
event then did not find: one visit counted as two)."""


class Sessionizer:
    def __init__(self, timeout_ms: int = SESSION_TIMEOUT_MS) -> None:
        self.timeout_ms = timeout_ms
        self._open: dict[tuple[str, str], list[Session]] = {}
        """(site, visitor) -> the visits held, oldest ``last_seen`` first."""
        self._reorder: list[Session] | None = None
        """The held visits of the last ``_live`` answer, when it was not the newest."""
        self._touched: dict[str, Session] = {}
        self.newest: int | None = None
        """The latest event time put in a visit, or on ``reset`` the latest ``last_seen`` of
        the visits resumed: the events' own clock, which ``horizon`` follows."""
        self.forgotten_before = NEVER
        """Visits whose ``last_seen`` is before this may be stored but are not held (evicted,
        or not loaded on ``reset``): an event that could continue one is ``late``."""

    def horizon(self, now_ms: int) -> int:
        """Where visits close, in the events' time: ``now_ms``, or the newest event held when
        that is earlier (a processor catching up on a backlog hours old). Closing them by
        the wall clock cut every visit of a backlog at each housekeeping."""
        return now_ms if self.newest is None else min(now_ms, self.newest)

    def reset(self, sessions: Iterable[Session], since_ms: int = NEVER) -> None:
        """Forget every visit held (and every change not drained), then resume from stored
        ones, every stored visit seen since ``since_ms``: the state after a failed or
        foreign batch is the store's, nothing of ours."""
        self._open.clear()
        self._touched.clear()
        self.newest = None
        self.forgotten_before = since_ms
        self.load(sessions)

    def late(self, ts: int) -> bool:
        """Whether an event at ``ts`` may continue a visit stored but not held (its visit is
        then loaded first: ``load``); one comparison, made for every event."""
        return ts - self.timeout_ms < self.forgotten_before

    def load(self, sessions: Iterable[Session]) -> None:
        """Hold stored visits (the store's ``open_sessions``, or ``visits_of`` for late
        events) in place of any held copy."""
        for session in sessions:
            self._hold(session)
            if self.newest is None or session.last_seen > self.newest:
                self.newest = session.last_seen

    def _hold(self, session: Session) -> None:
        key = (session.site_id, session.visitor_id)
        held = [s for s in self._open.get(key, ()) if s.session_id != session.session_id]
        held.append(session)
        held.sort(key=_last_seen)
        self._open[key] = held[-HELD_PER_VISITOR:]

    def _live(self, site_id: str, visitor_id: str, ts: int) -> Session | None:
        """The visit held for the visitor that an event at ``ts`` continues (the newest of
        them if two could), or None."""
        held = self._open.get((site_id, visitor_id))
        if held is None:
            return None
        timeout = self.timeout_ms
        newest = held[-1]  # nearly always the one (late events are rare)
        if ts - newest.last_seen <= timeout and newest.started_at - ts <= timeout:
            return newest
        for session in held[-2::-1]:
            if ts - session.last_seen <= timeout and session.started_at - ts <= timeout:
                self._reorder = held  # a late event's visit: its last_seen may pass another's
                return session
        return None

    def _find(self, event: ProcessedEvent, visitor_id_prev: str) -> Session | None:
        """The visitor's open visit at the event's time (also under yesterday's hash, which
        the event then takes on), or None."""
        ts = event.timestamp
        self._reorder = None
        session = self._live(event.site_id, event.visitor_id, ts)
        if session is None and visitor_id_prev and visitor_id_prev != event.visitor_id:
            session = self._live(event.site_id, visitor_id_prev, ts)
            if session is not None:
                event.visitor_id = visitor_id_prev
        return session

    def attach(self, event: ProcessedEvent, visitor_id_prev: str = "") -> Session | None:
        """Put an engagement event in the visitor's open visit without changing the visit (no
        event, no pageview, no later ``last_seen``: it cannot un-bounce a visit nor lengthen
        it); without an open visit it stays outside any (None): a measurement never starts
        a visit (decision 0018)."""
        session = self._find(event, visitor_id_prev)
        if session is not None:
            event.session_id = session.session_id
            _attribute(event, session)
        return session

    def assign(self, event: ProcessedEvent, visitor_id_prev: str = "") -> Session:
        """Put ``event`` in its visit (continuing one or starting one); sets its session_id."""
        ts = event.timestamp
        if self.newest is None or ts > self.newest:
            self.newest = ts
        session = self._find(event, visitor_id_prev)
        if session is None:
            session = new_visit(event, session_id_for(event.site_id, event.visitor_id, ts))
            count_into(session, event)
            self._hold(session)  # beside the visitor's current one, if this is a late event
        else:
            count_into(session, event)
            if self._reorder is not None:  # an older visit held continued: keep the order
                self._reorder.sort(key=_last_seen)
                self._reorder = None
        event.session_id = session.session_id
        _attribute(event, session)
        self._touched[session.session_id] = session
        return session

    def drain_touched(self) -> list[Session]:
        """The visits changed since the last call (to upsert with the batch)."""
        touched = list(self._touched.values())
        self._touched.clear()
        return touched

    def evict(self, before_ms: int) -> int:
        """Forget visits idle since before ``before_ms``; only a ``late`` event can continue
        one, and the runner then loads it again from the store. Returns how many were
        dropped."""
        dropped = 0
        self.forgotten_before = max(self.forgotten_before, before_ms)
        for key in list(self._open):
            held = self._open[key]
            kept = [s for s in held if s.last_seen >= before_ms]
            dropped += len(held) - len(kept)
            if kept:
                self._open[key] = kept
            else:
                del self._open[key]
        return dropped

    def __len__(self) -> int:
        return sum(len(held) for held in self._open.values())


def _last_seen(session: Session) -> int:
    return session.last_seen


def new_visit(event: ProcessedEvent, session_id: str) -> Session:
    """A visit that ``event`` starts: its attribution (source, UTM, device, country) is the
    first event's; counts start at zero (``count_into`` adds the event)."""
    ts = event.timestamp
    return Session(
        session_id=session_id,
        site_id=event.site_id,
        visitor_id=event.visitor_id,
        started_at=ts,
        last_seen=ts,
        entry_page=event.path,
        exit_page=event.path,
        pageviews=0,
        events=0,
        source=event.source,
        channel=event.channel,
        referrer_domain=event.referrer_domain,
        utm_source=event.utm_source,
        utm_medium=event.utm_medium,
        utm_campaign=event.utm_campaign,
        utm_term=event.utm_term,
        utm_content=event.utm_content,
        browser=event.browser,
        os=event.os,
        device=event.device,
        country=event.country,
    )


def count_into(visit: Session, event: ProcessedEvent) -> None:
    """The rules of a visit for one of its events, in any order: entry and exit pages by
    time (a visit started by an event on no page, a server-side one, enters on the page of
    its first event that has one), a ``session`` ping's duration extends it but is no
    interaction (it cannot un-bounce), pageviews and events counted."""
    ts = event.timestamp
    is_pageview = event.type == EventType.PAGEVIEW
    if not visit.entry_page:
        visit.entry_page = event.path
    if ts < visit.started_at:
        visit.started_at = ts
        if is_pageview:
            visit.entry_page = event.path
    if ts >= visit.last_seen:
        visit.last_seen = ts
        if is_pageview:
            visit.exit_page = event.path
    if event.type == EventType.SESSION and event.duration_ms:
        # the tracker's own measure of time on site extends the visit
        visit.last_seen = max(visit.last_seen, visit.started_at + event.duration_ms)
    if event.type != EventType.SESSION:
        visit.events += 1
    if is_pageview:
        visit.pageviews += 1
