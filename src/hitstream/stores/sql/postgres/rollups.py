"""The half-hour rollups in PostgreSQL: kept in the write transaction, read by stats queries.

Writing (``keep``), after the batch's fresh events were claimed and before its visit rows are
upserted: load the slots of the touched visits and visitors and the stored visit rows they
name, let ``hitstream.domain.rollups.change`` compute what the batch adds, then store the
changed slots, add the counts and the engagement sums (in key order: one lock order for
concurrent writers) and the load-time histogram.

Concurrency: a visitor's events all travel on one log partition (the collector keys by site
and visitor), and a write first locks its partitions' position rows, so two transactions never
load the same visitor's slots concurrently; the counts rows they share are added to with
``count = count + delta`` under row locks.

Reading (``answer``): a query is answered from the rollups when it has no filter or one
``property == value`` filter (the rows of that value), groups by nothing or by a rolled-up
property (a custom one from its key's ``from_slot`` on; another property under a filter
from the filter's segment, decision 0030; no load-time percentiles per value, and under a
filter they come from a narrow scan; no engagement metric per visit-row property: the sums
keep the events' own properties),
its interior bucket starts are whole half hours, the range widened to whole half hours adds
no stored event, and it starts at or after the site's ``rollup_from`` (and ``sums_from`` when
it asks an engagement metric: sums began with schema 9). Everything runs in one
REPEATABLE READ transaction, so the check and the sums see the same data.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

import psycopg

from hitstream.domain import rollups
from hitstream.domain.events import ProcessedEvent, Session, is_bounce, is_engagement
from hitstream.domain.measures import percentile_cont, reads_engagement
from hitstream.domain.stats import PROP_PREFIX, SESSION_PROPERTIES, StatsQuery
from hitstream.stores.sql.common import COLUMNS, ENGAGEMENT_COLUMNS, order_by
from hitstream.stores.sql.postgres import stats

Cursor = psycopg.AsyncCursor[Any]
Row = tuple[Any, ...]
DAY: Final = 86_400_000
_SLOT_COLUMNS: Final = "site_id, visitor_id, session_id, hour, members"
_PERCENTILES: Final = {"load_time_p50": 0.5, "load_time_p95": 0.95}
_SUMMED: Final = frozenset({"time_on_page", "scroll_depth", "avg_duration"})
"""Metrics read from the engagement sums (``rollup_sums``)."""
_COUNTED: Final = ("visitors", "visits", "pageviews", "events", "measured", "bounces", "duration")
"""The counts of a row of ``COLUMNS`` between its group and the load-time percentiles."""


# -- writing -------------------------------------------------------------------------------

_JSON = (",", ":")


def _slot(row: Row) -> rollups.Slot:
    site, visitor, visit, hour, members = row
    return rollups.slot_from_document((site, visitor, visit, int(hour)), members)


def _columns(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one list per column: what ``unnest(%b::type[], ...)`` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


async def _slots(cur: Cursor, column: str, keys: set[tuple[str, str]]) -> list[rollups.Slot]:
    if not keys:
        return []
    await cur.execute(
        f"SELECT {_SLOT_COLUMNS} FROM rollup_slots WHERE (site_id, {column}) IN "
        "(SELECT * FROM unnest(%b::text[], %b::text[]))",
        _columns(sorted(keys)),
    )
    return [_slot(row) for row in await cur.fetchall()]


async def _facts(
    cur: Cursor, visits: set[tuple[str, str]]
) -> dict[tuple[str, str], rollups.VisitFacts]:
    if not visits:
        return {}
    await cur.execute(
        "SELECT site_id, session_id, entry_page, exit_page, pageviews, events, "
        "last_seen - started_at FROM sessions WHERE (site_id, session_id) IN "
        "(SELECT * FROM unnest(%b::text[], %b::text[]))",
        _columns(sorted(visits)),
    )
    return {
        (site, visit): rollups.VisitFacts(entry, exit_, is_bounce(pageviews, events), int(dur))
        for site, visit, entry, exit_, pageviews, events, dur in await cur.fetchall()
    }


async def prop_keys(cur: Cursor, sites: Iterable[str]) -> dict[str, dict[str, int]]:
    """site -> rolled-up custom property key -> its first period (``rollup_props``)."""
    await cur.execute(
        "SELECT site_id, key, from_slot FROM rollup_props WHERE site_id = ANY(%b::text[])",
        (sorted(set(sites)),),
    )
    found: dict[str, dict[str, int]] = {}
    for site, key, start in await cur.fetchall():
        found.setdefault(site, {})[key] = int(start)
    return found


async def register(conn: psycopg.AsyncConnection[Any], events: Sequence[ProcessedEvent]) -> None:
    """Register the custom property keys of ``events`` their sites do not roll up yet, in a
    transaction of its own before the write's. It takes ``rollup_props`` in EXCLUSIVE mode, so
    it waits for every write that read the keys (they hold ROW SHARE until they commit) and
    its "newest stored event" includes theirs; later writes read the new keys."""
    sites = {e.site_id for e in events if e.props}
    if not sites:
        return
    async with conn.cursor() as cur:
        if not rollups.new_prop_keys(events, await prop_keys(cur, sites)):
            return
        async with conn.transaction():
            await cur.execute("LOCK TABLE rollup_props IN EXCLUSIVE MODE")
            new = rollups.new_prop_keys(events, await prop_keys(cur, sites))
            for site, keys in sorted(new.items()):
                await cur.execute("SELECT max(ts) FROM events WHERE site_id = %s", (site,))
                row = await cur.fetchone()
                start = rollups.prop_from(None if row is None or row[0] is None else int(row[0]))
                await cur.execute(
                    "INSERT INTO rollup_props SELECT %s, unnest(%b::text[]), %s",
                    (site, keys, start),
                )


async def segments(cur: Cursor, sites: Iterable[str]) -> dict[str, dict[rollups.Segment, int]]:
    """site -> rolled-up segment -> its first period (``rollup_segments``)."""
    await cur.execute(
        "SELECT site_id, dim, value, from_slot FROM rollup_segments "
        "WHERE site_id = ANY(%b::text[])",
        (sorted(set(sites)),),
    )
    found: dict[str, dict[rollups.Segment, int]] = {}
    for site, dim, value, start in await cur.fetchall():
        found.setdefault(site, {})[(dim, value)] = int(start)
    return found


async def want(
    conn: psycopg.AsyncConnection[Any], site: str, segment: rollups.Segment, now_ms: int
) -> bool:
    """A breakdown under ``segment`` was asked at ``now_ms`` (call outside any transaction):
    note it (``asked_at``, at most hourly), or register the segment from the period after the
    site's newest stored event, when it fits beside the others (``rollups.make_room``: the
    count and the budget of shares, dropping idle ones with their rows). A custom property
    the site does not roll up is no segment. As a key's registration (``register``), it holds
    EXCLUSIVE on ``rollup_props``: it waits for every write that read the segments, so
    "newest" includes theirs. Returns whether it was registered."""
    async with conn.cursor() as cur:
        asked = await _asked(cur, site)
        if segment in asked:
            if asked[segment] <= now_ms - rollups.SEGMENT_TOUCH_MS:
                await cur.execute(
                    "UPDATE rollup_segments SET asked_at = %s WHERE site_id = %s AND dim = %s "
                    "AND value = %s",
                    (now_ms, site, *segment),
                )
            return False
        async with conn.transaction():
            await cur.execute("LOCK TABLE rollup_props IN EXCLUSIVE MODE")
            asked = await _asked(cur, site)
            keys = (await prop_keys(cur, [site])).get(site, {})
            prop = segment[0]
            if segment in asked or (
                prop.startswith(PROP_PREFIX) and prop[len(PROP_PREFIX) :] not in keys
            ):
                return False
            await cur.execute("SELECT max(ts) FROM events WHERE site_id = %s", (site,))
            row = await cur.fetchone()
            newest = None if row is None or row[0] is None else int(row[0])
            shares = await _shares(cur, site, [*asked, segment], newest)
            dropped = rollups.make_room(asked, shares, shares[segment], now_ms)
            if dropped is None:
                return False
            for gone in dropped:
                await cur.execute(
                    "DELETE FROM rollup_segments WHERE site_id = %s AND dim = %s AND value = %s",
                    (site, *gone),
                )
                for table in ("rollups", "rollup_sums"):
                    await cur.execute(
                        f"DELETE FROM {table} WHERE site_id = %s AND dim = ANY(%b::text[])",
                        (site, rollups.segment_dims(gone, keys)),
                    )
            await cur.execute(
                "INSERT INTO rollup_segments VALUES (%s, %s, %s, %s, %s)",
                (site, prop, segment[1], rollups.prop_from(newest), now_ms),
            )
            return True


async def _shares(
    cur: Cursor, site: str, wanted: Sequence[rollups.Segment], newest: int | None
) -> dict[rollups.Segment, float]:
    """Each segment's share of the site's events over its last stored day, from the rollup
    rows of the segments' values (0 for a site without events)."""
    if newest is None:
        return dict.fromkeys(wanted, 0.0)
    await cur.execute(
        "SELECT dim, value, sum(events) FROM rollups WHERE site_id = %s "
        "AND dim = ANY(%b::text[]) AND hour >= %s GROUP BY 1, 2",
        (site, sorted({prop for prop, _ in wanted} | {""}), rollups.slot_of(newest) - DAY),
    )
    counts = {(dim, value): int(n or 0) for dim, value, n in await cur.fetchall()}
    total = counts.get(rollups.TOTAL, 0)
    return {segment: counts.get(segment, 0) / total if total else 0.0 for segment in wanted}


async def _asked(cur: Cursor, site: str) -> dict[rollups.Segment, int]:
    await cur.execute(
        "SELECT dim, value, asked_at FROM rollup_segments WHERE site_id = %s", (site,)
    )
    return {(dim, value): int(at) for dim, value, at in await cur.fetchall()}


async def _keys(
    cur: Cursor, sites: Iterable[str], visit_sites: Iterable[str] = ()
) -> tuple[rollups.PropKeys, rollups.Segments]:
    """The keys the write's sites roll up and the segments of those and of ``visit_sites``,
    read under ROW SHARE (see ``register``)."""
    sites = set(sites)
    await cur.execute("LOCK TABLE rollup_props IN ROW SHARE MODE")
    keys = rollups.keys_of(await prop_keys(cur, sites)) if sites else {}
    return keys, rollups.segments_of(await segments(cur, sites | set(visit_sites)))


async def keep(cur: Cursor, events: Sequence[ProcessedEvent], sessions: Sequence[Session]) -> None:
    """Update the rollups for ``events`` (fresh ones only) and visit rows ``sessions``, which
    are not upserted yet (their stored versions are what is taken back). Engagement events
    count in no chained number (decision 0018), only in the engagement sums."""
    keys, segmented = await _keys(cur, {e.site_id for e in events}, {s.site_id for s in sessions})
    await _add_sums(cur, rollups.event_sums(events, keys=keys, segments=segmented))
    events = [e for e in events if not is_engagement(e.type)]
    if not events and not sessions:
        return
    touched = rollups.touched(events, sessions)
    by_visit = await _slots(cur, "session_id", touched.visits)
    by_visitor = await _slots(cur, "visitor_id", touched.visitors)
    visitors = touched.visitors | rollups.affected_visitors(by_visit, sessions)
    stored = {s.key: s for s in by_visit + by_visitor}
    stored |= {s.key: s for s in await _slots(cur, "visitor_id", visitors - touched.visitors)}
    named = {(s.site, s.visit) for s in stored.values() if s.visit} | touched.visits
    facts = await _facts(cur, named)
    # pure Python over the whole batch (~20 µs an event): off the event loop, so that the
    # processor's health and metrics endpoints answer meanwhile
    change = await asyncio.to_thread(
        rollups.change, list(stored.values()), facts, events, sessions, visitors, keys, segmented
    )
    if change.slots:
        rows = [
            (
                *s.key,
                json.dumps(rollups.slot_document(s), ensure_ascii=False, separators=(",", ":")),
            )
            for s in sorted(change.slots, key=lambda s: s.key)
        ]
        await cur.execute(
            f"INSERT INTO rollup_slots ({_SLOT_COLUMNS}) SELECT s, v, i, h, m::jsonb FROM unnest("
            "%b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[]) AS u(s, v, i, h, m) "
            "ON CONFLICT (site_id, visitor_id, session_id, hour) "
            "DO UPDATE SET members = excluded.members",
            _columns(rows),
        )
    if change.counts:
        ordered = sorted(change.counts)
        columns = _columns(ordered) + _columns(change.counts[k] for k in ordered)
        await cur.execute(
            f"INSERT INTO rollups (site_id, dim, value, hour, prev, {', '.join(rollups.FIELDS)}) "
            "SELECT * FROM unnest("
            + ", ".join(["%b::text[]"] * 3 + ["%b::bigint[]"] * 9)
            + ") ON CONFLICT (site_id, dim, hour, value, prev) DO UPDATE SET "
            + ", ".join(f"{c} = rollups.{c} + excluded.{c}" for c in rollups.FIELDS),
            columns,
        )
    await _add_load_counts(cur, rollups.load_counts(events))


async def _add_sums(cur: Cursor, sums: dict[rollups.SumKey, list[int]]) -> None:
    if not sums:
        return
    keys = sorted(sums)
    await cur.execute(
        f"INSERT INTO rollup_sums (site_id, dim, value, hour, {', '.join(rollups.SUMS)}) "
        "SELECT * FROM unnest("
        + ", ".join(["%b::text[]"] * 3 + ["%b::bigint[]"] * (1 + len(rollups.SUMS)))
        + ") ON CONFLICT (site_id, dim, hour, value) DO UPDATE SET "
        + ", ".join(f"{c} = rollup_sums.{c} + excluded.{c}" for c in rollups.SUMS),
        _columns((*key, *sums[key]) for key in keys),
    )


async def _add_load_counts(cur: Cursor, loads: dict[tuple[str, int, int], int]) -> None:
    """Add (site, period, load time) -> pageviews to the half-hour and the daily histograms."""
    if not loads:
        return
    await _add_loads(cur, "rollup_loads", "hour", loads)
    daily: dict[tuple[str, int, int], int] = {}
    for (site, hour, value), n in loads.items():
        key = (site, hour // DAY * DAY, value)
        daily[key] = daily.get(key, 0) + n
    await _add_loads(cur, "rollup_loads_daily", "day", daily)


async def _add_loads(
    cur: Cursor, table: str, period: str, loads: dict[tuple[str, int, int], int]
) -> None:
    await cur.execute(
        f"INSERT INTO {table} (site_id, {period}, load_ms, n) "
        "SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::bigint[]) "
        f"ON CONFLICT (site_id, {period}, load_ms) DO UPDATE SET n = {table}.n + excluded.n",
        _columns((*key, n) for key, n in sorted(loads.items())),
    )


_HOURLY: Final = ("rollups", "rollup_sums", "rollup_slots", "rollup_loads")
"""The tables keyed by half hour."""


async def forget_before(cur: Cursor, cutoff_ms: int) -> None:
    """Retention: rollups of periods that lost events are no longer used (``rollup_from`` moves
    past them) and the slots and rows wholly before the cutoff go."""
    first_whole = rollups.slot_after(cutoff_ms)
    await cur.execute(
        "UPDATE sites SET rollup_from = %s WHERE rollup_from < %s", (first_whole, first_whole)
    )
    below = rollups.slot_of(cutoff_ms)
    for table in _HOURLY:
        await cur.execute(f"DELETE FROM {table} WHERE hour < %s", (below,))
    await cur.execute("DELETE FROM rollup_loads_daily WHERE day < %s", (below // DAY * DAY,))


async def forget_site_before(cur: Cursor, site_id: str, cutoff_ms: int) -> None:
    """Per-site retention: as ``forget_before``, for one site."""
    first_whole = rollups.slot_after(cutoff_ms)
    await cur.execute(
        "UPDATE sites SET rollup_from = %s WHERE site_id = %s AND rollup_from < %s",
        (first_whole, site_id, first_whole),
    )
    below = rollups.slot_of(cutoff_ms)
    for table in _HOURLY:
        await cur.execute(f"DELETE FROM {table} WHERE site_id = %s AND hour < %s", (site_id, below))
    await cur.execute(
        "DELETE FROM rollup_loads_daily WHERE site_id = %s AND day < %s",
        (site_id, below // DAY * DAY),
    )


async def forget_visitors(
    cur: Cursor, site_id: str, visitors: Sequence[str], events: Sequence[ProcessedEvent]
) -> None:
    """Take back everything these visitors count, before their events and visit rows are
    deleted (forgetting a user): their slots and the visit rows those name are loaded, the
    domain computes what they added (``rollups.take_back``), and that is subtracted; the
    slots go. ``events``: their stored events (for the engagement sums and load times)."""
    if not visitors:
        return
    keys, segmented = await _keys(cur, [site_id])
    await _add_sums(cur, rollups.event_sums(events, -1, keys, segmented))
    ids = {(site_id, visitor) for visitor in visitors}
    slots = await _slots(cur, "visitor_id", ids)
    facts = await _facts(cur, {(s.site, s.visit) for s in slots if s.visit})
    counts = rollups.take_back(slots, facts, segmented)
    if counts:
        ordered = sorted(counts)
        columns = _columns(ordered) + _columns(counts[k] for k in ordered)
        await cur.execute(
            f"INSERT INTO rollups (site_id, dim, value, hour, prev, {', '.join(rollups.FIELDS)}) "
            "SELECT * FROM unnest("
            + ", ".join(["%b::text[]"] * 3 + ["%b::bigint[]"] * 9)
            + ") ON CONFLICT (site_id, dim, hour, value, prev) DO UPDATE SET "
            + ", ".join(f"{c} = rollups.{c} + excluded.{c}" for c in rollups.FIELDS),
            columns,
        )
    await cur.execute(
        "DELETE FROM rollup_slots WHERE site_id = %s AND visitor_id = ANY(%b::text[])",
        (site_id, list(visitors)),
    )
    await _add_load_counts(cur, rollups.load_counts(events, -1))


_REBUILD_CHUNK: Final = 5_000


async def rebuild(conn: psycopg.AsyncConnection[Any], event_columns: Sequence[str]) -> int:
    """Recompute every rollup from the stored events and visit rows; return the events read.

    One transaction: it first locks ``positions`` against writes, so processors wait (their
    writes lock position rows first) and lose nothing, and readers see the old rollups until
    the new ones are complete. Events are read in time order through a server-side cursor and
    kept in chunks as a processor would keep them, with the visit rows as stored."""
    names = list(event_columns)
    read = 0
    async with conn.transaction():
        await conn.execute("LOCK TABLE positions IN EXCLUSIVE MODE")
        await conn.execute(
            "TRUNCATE rollups, rollup_sums, rollup_slots, rollup_loads, rollup_loads_daily, "
            "rollup_props"
        )
        # every site's custom property keys, the first it sent first, rolled up from the start
        await conn.execute(
            "INSERT INTO rollup_props SELECT site_id, key, %s FROM (SELECT site_id, key, "
            "row_number() OVER (PARTITION BY site_id ORDER BY first, key) AS n FROM (SELECT "
            "site_id, key, min(ts) AS first FROM events, jsonb_object_keys(props) AS key "
            "GROUP BY 1, 2) k) r WHERE n <= %s",
            (rollups.NONE, rollups.PROP_KEYS_PER_SITE),
        )
        await conn.execute("UPDATE rollup_segments SET from_slot = %s", (rollups.NONE,))
        await conn.execute(  # a segment of a custom property needs the key rolled up
            "DELETE FROM rollup_segments s WHERE starts_with(dim, %s) AND NOT EXISTS (SELECT 1 "
            "FROM rollup_props k WHERE k.site_id = s.site_id AND %s || k.key = s.dim)",
            (PROP_PREFIX, PROP_PREFIX),
        )
        async with conn.cursor() as cur, conn.cursor(name="hitstream_rebuild") as rows:
            await rows.execute(f"SELECT {', '.join(names)} FROM events ORDER BY ts, event_id")
            while batch := await rows.fetchmany(_REBUILD_CHUNK):
                events = [_event(dict(zip(names, row, strict=True))) for row in batch]
                await keep(cur, events, [])
                read += len(events)
            await cur.execute(
                "UPDATE sites SET rollup_from = %s, sums_from = %s", (rollups.NONE, rollups.NONE)
            )
    return read


def _event(row: dict[str, Any]) -> ProcessedEvent:
    row["timestamp"] = row.pop("ts")
    row["props"] = dict(row.get("props") or {})
    return ProcessedEvent(**row)


# -- reading -------------------------------------------------------------------------------


def usable(query: StatsQuery, group: str | None, buckets: Sequence[int] | None) -> bool:
    """Whether the query's shape can be answered from the rollups (the data check follows)."""
    only = rollups.only_value(query)
    if query.filters and only is None:
        return False
    dim = group if only is None else only[0]
    if only is not None and group not in (None, dim):
        if rollups.segment_of(query, group) is None:
            return False
        dim = group  # a segment's breakdown: its rows by the group (``answer``)
    if dim is not None:
        if group is not None and any(m in _PERCENTILES for m in query.metrics):
            return False  # under a filter, an aggregate's percentiles come from a scan
        if dim not in rollups.DIMS and not dim.startswith(PROP_PREFIX):
            return False
        if dim in SESSION_PROPERTIES and _SUMMED.intersection(query.metrics):
            return False  # the sums keep the events' own properties only
    return not buckets or all(start % rollups.SLOT == 0 for start in buckets[1:])


async def _covered(
    cur: Cursor, query: StatsQuery, group: str | None, segment: rollups.Segment | None = None
) -> bool:
    """Whether the rollup periods of the range hold exactly the range's events (and, for a
    ``prop:`` group or a segment's breakdown, whether the site rolls the key or the segment
    up from the range's first period on)."""
    lo, hi = rollups.slot_of(query.range.start), rollups.slot_after(query.range.end)
    if segment is not None:
        since = (await segments(cur, [query.site_id])).get(query.site_id, {}).get(segment)
        if since is None or lo < since:
            return False
    if group is not None and group.startswith(PROP_PREFIX):
        await cur.execute(
            "SELECT from_slot FROM rollup_props WHERE site_id = %s AND key = %s",
            (query.site_id, group[len(PROP_PREFIX) :]),
        )
        found = await cur.fetchone()
        if found is None or lo < int(found[0]):
            return False
    start = (
        "greatest(rollup_from, sums_from)"
        if _SUMMED.intersection(query.metrics)
        else ("rollup_from")
    )
    await cur.execute(
        f"SELECT {start}, EXISTS (SELECT 1 FROM events WHERE site_id = %(s)s AND "
        "((ts >= %(lo)s AND ts < %(a)s) OR (ts >= %(b)s AND ts < %(hi)s))) "
        "FROM sites WHERE site_id = %(s)s",
        {"s": query.site_id, "lo": lo, "a": query.range.start, "b": query.range.end, "hi": hi},
    )
    row = await cur.fetchone()
    return row is not None and lo >= int(row[0]) and not row[1]


async def _percentiles(
    cur: Cursor, g: str, params: dict[str, Any], *, whole_days: bool
) -> dict[int, tuple[float, float]]:
    """group -> (p50, p95) of the load times, from the histograms: half-hour rows, or (one
    group, ``whole_days``) daily rows for the UTC days inside the range and half-hour rows at
    its edges."""
    lo, hi = params["lo"], params["hi"]
    first, last = -(-lo // DAY) * DAY, hi // DAY * DAY
    if whole_days and first < last:
        sql = (
            "SELECT 0, load_ms, sum(n)::bigint FROM ("
            "SELECT load_ms, n FROM rollup_loads_daily WHERE site_id = %(site)s "
            "AND day >= %(first)s AND day < %(last)s UNION ALL "
            "SELECT load_ms, n FROM rollup_loads WHERE site_id = %(site)s "
            "AND ((hour >= %(lo)s AND hour < %(first)s) OR (hour >= %(last)s AND hour < %(hi)s))"
            ") u GROUP BY 1, 2 ORDER BY 1, 2"
        )
        params = {**params, "first": first, "last": last}
    else:
        sql = (
            f"SELECT {g} AS g, load_ms, sum(n)::bigint FROM rollup_loads "
            "WHERE site_id = %(site)s AND hour >= %(lo)s AND hour < %(hi)s "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
    await cur.execute(sql, params)
    pairs: dict[int, list[tuple[int, int]]] = {}
    for group, value, n in await cur.fetchall():
        pairs.setdefault(int(group), []).append((int(value), int(n)))
    return {
        group: (
            percentile_cont(rollups.Histogram(p), 0.5),
            percentile_cont(rollups.Histogram(p), 0.95),
        )
        for group, p in pairs.items()
    }


async def _with_percentiles(
    cur: Cursor,
    query: StatsQuery,
    rows: list[Row],
    buckets: Sequence[int] | None,
    collation: str | None,
) -> list[Row]:
    """``rows`` (an aggregate or timeseries under one filter) with their load-time
    percentiles, which the rollups keep per site only: from a scan of the filtered
    pageviews' load times (no distinct counts), grouped as ``rows``."""
    asked = tuple(m for m in query.metrics if m in _PERCENTILES)
    sql, params = stats.stats_sql(
        replace(query, metrics=asked), buckets=list(buckets or []), collation=collation
    )
    await cur.execute(sql, params)
    found = {int(row[0]): row[8:10] for row in await cur.fetchall()}
    # an aggregate's one rollup row is named 0, as the scan's
    return [(*row[:8], *found.get(int(row[0]), (None, None)), *row[10:]) for row in rows]


async def answer(
    cur: Cursor,
    query: StatsQuery,
    *,
    group: str | None = None,
    buckets: Sequence[int] | None = None,
    collation: str | None = None,
) -> list[Row] | None:
    """Rows of ``COLUMNS`` from the rollups, or None if the data does not allow it (call
    inside a REPEATABLE READ transaction, after ``usable``)."""
    only = rollups.only_value(query)
    dim = only[0] if only is not None else (group or "")
    segment = rollups.segment_of(query, group)
    if segment is not None and group is not None:
        if not await _covered(cur, query, group, segment):
            return None
        dim, only = rollups.segment_dim(*segment, group), None
    elif not await _covered(cur, query, dim or None):
        return None
    params: dict[str, Any] = {
        "site": query.site_id,
        "dim": dim,
        "lo": rollups.slot_of(query.range.start),
        "hi": rollups.slot_after(query.range.end),
    }
    if buckets:  # the first bucket from the slot holding its start (``slot_starts``)
        params["starts"] = rollups.slot_starts(buckets)
        g = "(%(starts)s::bigint[])[width_bucket(hour, %(starts)s::bigint[])]"
        first = f"greatest({g}, %(lo)s)"
    else:
        g = "value" if group is not None else "0"
        first = "%(lo)s"
    chained = ", ".join(
        f"coalesce(sum({c}) FILTER (WHERE prev < {first}), 0)::bigint AS {c}"
        for c in ("visitors", "visits", "measured", "bounces", "duration")
    )
    where = "WHERE site_id = %(site)s AND dim = %(dim)s AND hour >= %(lo)s AND hour < %(hi)s"
    if only is not None:  # the rows of the filter's one value
        params["only"] = only[1]
        where += " AND value = %(only)s"
    sql = (
        f"SELECT {g} AS g, {chained}, sum(pageviews)::bigint AS pageviews, "
        f"sum(events)::bigint AS events FROM rollups {where} GROUP BY 1"
    )
    if _SUMMED.intersection(query.metrics):
        # the groups with events, and (when engagement events match) those with engagements
        summed = ", ".join(f"sum({c})::bigint AS {c}" for c in rollups.SUMS)
        counted = ", ".join(f"coalesce(c.{c}, 0)::bigint AS {c}" for c in _COUNTED)
        engaged = ", ".join(f"coalesce(s.{c}, 0)::bigint AS {c}" for c in rollups.SUMS[1:])
        present = "c.events > 0" + (
            " OR s.engagements > 0" if reads_engagement(query.metrics) else ""
        )
        sql = (
            f"SELECT coalesce(c.g, s.g) AS g, {counted}, NULL::float8 AS p50, "
            f"NULL::float8 AS p95, {engaged} FROM ({sql}) c FULL JOIN "
            f"(SELECT {g} AS g, {summed} FROM rollup_sums {where} GROUP BY 1) s "
            f"ON s.g = c.g WHERE {present}"
        )
    else:
        sql = (
            f"SELECT *, NULL::float8 AS p50, NULL::float8 AS p95, {ENGAGEMENT_COLUMNS[1]} "
            f"FROM ({sql}) c WHERE events > 0"
        )
    if group is not None:
        params["limit"] = query.limit
        sql = (
            f"SELECT {COLUMNS} FROM ({sql}) r ORDER BY {order_by(query.metrics)}, "
            'g COLLATE "C" ASC LIMIT %(limit)s'
        )
    else:
        sql = f"SELECT {COLUMNS} FROM ({sql}) r"
    await cur.execute(sql, params)
    rows = await cur.fetchall()
    if buckets and params["starts"][0] != buckets[0]:  # the first bucket named by its start
        rows = [(buckets[0], *row[1:]) if row[0] == params["starts"][0] else row for row in rows]
    if only is not None and group is None and any(m in _PERCENTILES for m in query.metrics):
        rows = await _with_percentiles(cur, query, rows, buckets, collation)
    if not dim and any(m in _PERCENTILES for m in query.metrics):
        found = await _percentiles(cur, g if buckets else "0", params, whole_days=not buckets)
        if buckets and params["starts"][0] in found:
            found[buckets[0]] = found.pop(params["starts"][0])
        rows = [(*row[:8], *found.get(int(row[0]), (None, None)), *row[10:]) for row in rows]
    return rows
