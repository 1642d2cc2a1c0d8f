"""The half-hour rollups in DuckDB: kept in the write transaction, read by stats queries.

The rules are the domain's (``hitstream.domain.rollups``), the same as PostgreSQL's
(``stores/sql/postgres/rollups.py``); what differs is how DuckDB holds them. Counts, sums and
load-time histograms are *appended* as deltas (no key, no index, so a write costs an append
and no index lives in memory) and every read sums them; ``compact`` folds the deltas of recent
periods back into one row per key. Slots are replaced whole: the rows a write loaded are
deleted by ``rowid`` and the changed slots inserted.

Every function here runs on the store's one DuckDB thread, inside the caller's transaction
(writes) or as one job (reads), so nothing interleaves: the data a query checks is the data
it sums.

Writing (``keep``), after the batch's fresh events were inserted and before its visit rows are
upserted: load the slots of the touched visits and visitors and the stored visit rows they
name, let ``rollups.change`` compute what the batch adds, then store the changed slots and
append the counts, the engagement sums and the load-time histogram.

Reading (``answer``): a query is answered from the rollups when it has no filter or one
``property == value`` filter (the rows of that value), groups by nothing or by a rolled-up
property (a custom one from its key's ``from_slot`` on; another property under a filter
from the filter's segment, decision 0030; no load-time percentiles per value, and under a
filter they come from a narrow scan; no engagement metrics by a visit-row property), its
interior bucket starts are whole half hours, the range widened to whole half hours adds no
stored event, and it starts at or after the site's ``rollup_from``.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

import duckdb
import msgspec

from hitstream.domain import rollups
from hitstream.domain.events import ProcessedEvent, Session, is_bounce, is_engagement
from hitstream.domain.stats import PROP_PREFIX, SESSION_PROPERTIES, StatsQuery
from hitstream.stores import rollup_views
from hitstream.stores.sql.duckdb import stats, writes

Connection = duckdb.DuckDBPyConnection
Row = tuple[Any, ...]
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_PERCENTILES: Final = frozenset({"load_time_p50", "load_time_p95"})
_CHAINED: Final = ("visitors", "visits", "measured", "bounces", "duration")
TABLES: Final = ("rollups", "rollup_sums", "rollup_loads", "rollup_slots")
"""Every table holding rollups, each with ``site_id`` and ``hour``."""


# -- writing -------------------------------------------------------------------------------


_US: Final = "\x1f"
_RS: Final = "\x1e"


def _append(conn: Connection, table: str, types: Sequence[str], rows: list[tuple[Any, ...]]) -> int:
    """Append rows to ``table`` (its columns in order, of SQL ``types``); return how many.

    As the events' insert does (``writes``): the rows travel as ONE string that SQL splits,
    which costs a tenth of handing DuckDB a Python value per cell; a field holding a
    separator sends that append as one list parameter per column instead. Each row is
    printed by one ``%`` format (half the time of joining ``str`` of each field)."""
    if not rows:
        return 0
    width = len(types)
    line = _US.join(("%s",) * width)
    packed = _RS.join([line % row for row in rows])
    casts = ", ".join(f"CAST(l[{i + 1}] AS {kind})" for i, kind in enumerate(types))
    if packed.count(_US) == len(rows) * (width - 1) and packed.count(_RS) == len(rows) - 1:
        conn.execute(
            f"INSERT INTO {table} SELECT {casts} FROM "
            "(SELECT string_split(unnest(string_split($packed, chr(30))), chr(31)) AS l)",
            {"packed": packed},
        )
        return len(rows)
    params = {f"c{i}": [row[i] for row in rows] for i in range(width)}
    selected = ", ".join(f"unnest($c{i}::{kind}[])" for i, kind in enumerate(types))
    conn.execute(f"INSERT INTO {table} SELECT {selected}", params)
    return len(rows)


_COUNT_TYPES: Final = ("VARCHAR",) * 3 + ("BIGINT",) * (2 + len(rollups.FIELDS))
_SUM_TYPES: Final = ("VARCHAR",) * 3 + ("BIGINT",) * (1 + len(rollups.SUMS))
_LOAD_TYPES: Final = ("VARCHAR", "BIGINT", "BIGINT", "BIGINT")


def _by_ids(conn: Connection, select: str, column: str, ids: set[str]) -> list[Row]:
    """Rows of ``select`` whose ``column`` is one of ``ids``, through the column's index:
    the ids go as literals (a parameter list or a subquery is joined, not looked up)."""
    ordered, rows = sorted(ids), []
    for at in range(0, len(ordered), writes.IDS_PER_STATEMENT):
        listed = ", ".join(map(writes.literal, ordered[at : at + writes.IDS_PER_STATEMENT]))
        rows += conn.execute(f"{select} WHERE {column} IN ({listed})").fetchall()
    return rows


def _slots(
    conn: Connection, visits: set[tuple[str, str]], visitors: set[tuple[str, str]]
) -> dict[rollups.SlotKey, tuple[int, rollups.Slot]]:
    """key -> (rowid, slot) of every stored slot of the visits or visitors."""
    select = "SELECT rowid, site_id, visitor_id, session_id, hour, members FROM rollup_slots"
    visit_ids = {visit for _, visit in visits}
    visitor_ids = {visitor for _, visitor in visitors}
    limit = writes.IDS_PER_STATEMENT
    if visit_ids and visitor_ids and len(visit_ids) <= limit and len(visitor_ids) <= limit:
        # one statement, each half through its own index (a write's fixed cost is mostly
        # per statement: ~1 ms saved)
        by_visit = ", ".join(map(writes.literal, sorted(visit_ids)))
        by_visitor = ", ".join(map(writes.literal, sorted(visitor_ids)))
        rows = conn.execute(
            f"{select} WHERE session_id IN ({by_visit}) "
            f"UNION ALL {select} WHERE visitor_id IN ({by_visitor})"
        ).fetchall()
    else:
        rows = _by_ids(conn, select, "session_id", visit_ids)
        rows += _by_ids(conn, select, "visitor_id", visitor_ids)
    found: dict[rollups.SlotKey, tuple[int, rollups.Slot]] = {}
    for rowid, site, visitor, visit, hour, members in rows:
        # ids are matched without their site above (one index each): the site here
        key = (site, visitor, visit, int(hour))
        if key not in found and ((site, visit) in visits or (site, visitor) in visitors):
            found[key] = (int(rowid), rollups.slot_from_document(key, _decode(members)))
    return found


def _visit_rows(
    conn: Connection, visits: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, rollups.VisitFacts]]:
    """(site, visit) -> (rowid, facts) of the stored visit row of each of ``visits`` that has
    one."""
    if not visits:
        return {}
    rows = _by_ids(
        conn,
        "SELECT rowid, site_id, session_id, entry_page, exit_page, pageviews, events, "
        "last_seen - started_at FROM sessions",
        "session_id",
        {visit for _, visit in visits},
    )
    return {
        (site, visit): (
            int(rowid),
            rollups.VisitFacts(entry, exit_, is_bounce(pageviews, events), int(dur)),
        )
        for rowid, site, visit, entry, exit_, pageviews, events, dur in rows
        if (site, visit) in visits
    }


def _facts(conn: Connection, visits: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    return {visit: facts for visit, (_, facts) in _visit_rows(conn, visits).items()}


def _slot_text(slot: rollups.Slot) -> str:
    return _encode(rollups.slot_document(slot)).decode()


def _of_sites(select: str, sites: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """``select`` (no WHERE) for rows of ``sites``: a few as literals (~0.6 ms a statement
    against ~1 ms for a list parameter; every write asks twice)."""
    ordered = sorted(set(sites))
    if len(ordered) <= 64:
        listed = ", ".join(map(writes.literal, ordered)) or "NULL"
        return f"{select} WHERE site_id IN ({listed})", {}
    return f"{select} WHERE site_id IN (SELECT unnest($s::VARCHAR[]))", {"s": ordered}


def prop_keys(conn: Connection, sites: Iterable[str]) -> dict[str, dict[str, int]]:
    """site -> rolled-up custom property key -> its first period (``rollup_props``)."""
    found: dict[str, dict[str, int]] = {}
    select = "SELECT site_id, key, from_slot FROM rollup_props"
    rows = conn.execute(*_of_sites(select, sites)).fetchall()
    for site, key, start in rows:
        found.setdefault(site, {})[key] = int(start)
    return found


def register(conn: Connection, events: Sequence[ProcessedEvent]) -> rollups.PropKeys:
    """The custom property keys the sites of ``events`` roll up, registering the new ones
    from the period after the site's newest stored event: run before ``events`` are
    inserted (they all count under the keys)."""
    known = prop_keys(conn, {e.site_id for e in events})
    for site, keys in rollups.new_prop_keys(events, known).items():
        newest = conn.execute("SELECT max(ts) FROM events WHERE site_id = $s", {"s": site})
        row = newest.fetchone()
        start = rollups.prop_from(None if row is None or row[0] is None else int(row[0]))
        conn.execute(
            "INSERT INTO rollup_props SELECT $s, unnest($k::VARCHAR[]), $f",
            {"s": site, "k": keys, "f": start},
        )
        known.setdefault(site, {}).update(dict.fromkeys(keys, start))
    return rollups.keys_of(known)


def segments(conn: Connection, sites: Iterable[str]) -> dict[str, dict[rollups.Segment, int]]:
    """site -> rolled-up segment -> its first period (``rollup_segments``)."""
    found: dict[str, dict[rollups.Segment, int]] = {}
    select = "SELECT site_id, dim, value, from_slot FROM rollup_segments"
    rows = conn.execute(*_of_sites(select, sites)).fetchall()
    for site, dim, value, start in rows:
        found.setdefault(site, {})[(dim, value)] = int(start)
    return found


def segments_of(conn: Connection, sites: Iterable[str]) -> rollups.Segments:
    """The ``Segments`` the write's sites roll up."""
    return rollups.segments_of(segments(conn, sites))


def want(
    conn: Connection,
    site: str,
    segment: rollups.Segment,
    now_ms: int,
    views: rollup_views.Views | None = None,
) -> bool:
    """A breakdown under ``segment`` was asked at ``now_ms``: note it (``asked_at``, at most
    hourly), or register the segment from the period after the site's newest stored event
    (every event stored from then on counts in it), when it fits beside the others
    (``rollups.make_room``: the count and the budget of shares, dropping idle ones with their
    rows and the site's ``views``). A custom property the site does not roll up is no
    segment. Run between writes (a job on the store's thread). Returns whether it was
    registered."""
    asked = {
        (dim, value): int(at)
        for dim, value, at in conn.execute(
            "SELECT dim, value, asked_at FROM rollup_segments WHERE site_id = $s", {"s": site}
        ).fetchall()
    }
    if segment in asked:
        if asked[segment] <= now_ms - rollups.SEGMENT_TOUCH_MS:
            conn.execute(
                "UPDATE rollup_segments SET asked_at = $t WHERE site_id = $s AND dim = $d "
                "AND value = $v",
                {"t": now_ms, "s": site, "d": segment[0], "v": segment[1]},
            )
        return False
    memo = (site, *segment)
    if (
        views is not None
        and views.refused.get(memo, rollups.NONE) > now_ms - rollups.SEGMENT_TOUCH_MS
    ):
        return False  # refused within the hour
    keys = prop_keys(conn, [site]).get(site, {})
    prop = segment[0]
    row = conn.execute("SELECT max(ts) FROM events WHERE site_id = $s", {"s": site}).fetchone()
    newest = None if row is None or row[0] is None else int(row[0])
    dropped = None
    if not prop.startswith(PROP_PREFIX) or prop[len(PROP_PREFIX) :] in keys:
        shares = _shares(conn, site, [*asked, segment], newest)
        dropped = rollups.make_room(asked, shares, shares[segment], now_ms)
    if dropped is None:
        if views is not None:
            if len(views.refused) >= 4096:
                views.refused.clear()
            views.refused[memo] = now_ms
        return False
    with writes.transaction(conn):
        for gone in dropped:
            conn.execute(
                "DELETE FROM rollup_segments WHERE site_id = $s AND dim = $d AND value = $v",
                {"s": site, "d": gone[0], "v": gone[1]},
            )
            for table in ("rollups", "rollup_sums"):
                conn.execute(
                    f"DELETE FROM {table} WHERE site_id = $s AND "
                    "dim IN (SELECT unnest($dims::VARCHAR[]))",
                    {"s": site, "dims": rollups.segment_dims(gone, keys)},
                )
        conn.execute(
            "INSERT INTO rollup_segments VALUES ($s, $d, $v, $f, $t) ON CONFLICT DO NOTHING",
            {"s": site, "d": prop, "v": segment[1], "f": rollups.prop_from(newest), "t": now_ms},
        )
    if dropped and views is not None:
        views.clear([site])
    return True


def _shares(
    conn: Connection, site: str, wanted: Sequence[rollups.Segment], newest: int | None
) -> dict[rollups.Segment, float]:
    """Each segment's share of the site's events over its last stored day, from the rollup
    rows of the segments' values (0 for a site without events)."""
    if newest is None:
        return dict.fromkeys(wanted, 0.0)
    rows = conn.execute(
        "SELECT dim, value, sum(events) FROM rollups WHERE site_id = $s AND hour >= $lo "
        "AND dim IN (SELECT unnest($dims::VARCHAR[])) GROUP BY ALL",
        {
            "s": site,
            "lo": rollups.slot_of(newest) - 48 * rollups.SLOT,
            "dims": sorted({prop for prop, _ in wanted} | {""}),
        },
    ).fetchall()
    counts = {(dim, value): int(n or 0) for dim, value, n in rows}
    total = counts.get(rollups.TOTAL, 0)
    return {segment: counts.get(segment, 0) / total if total else 0.0 for segment in wanted}


def keep(
    conn: Connection,
    events: Sequence[ProcessedEvent],
    sessions: Sequence[Session],
    keys: rollups.PropKeys,
    segments: rollups.Segments | None = None,
) -> tuple[rollup_views.Deltas, int, int | None, dict[tuple[str, str], int] | None]:
    """Update the rollups for ``events`` (fresh ones only) and visit rows ``sessions``, which
    are not upserted yet (their stored versions are what is taken back); ``keys``: the custom
    property keys of their sites (``register``), ``segments`` the segments of the sites of
    events and visit rows (``segments_of``). Engagement events count in the sums only,
    not in the chains (decision 0018). Returns what was added, how many delta rows that
    appended, the earliest period they touch (None: none), and the rowid of the stored row
    of every visit of ``sessions`` that has one (None: not looked up), which the visit rows'
    upsert then deletes by rowid instead of looking them up again."""
    appended, lowest = 0, None
    counts: rollups.Counts = {}
    visit_rows: dict[tuple[str, str], int] | None = None if sessions else {}
    sums = rollups.event_sums(events, keys=keys, segments=segments)
    loads = rollups.load_counts(events)
    counted = [e for e in events if not is_engagement(e.type)]
    if counted or sessions:
        touched = rollups.touched(counted, sessions)
        loaded = _slots(conn, touched.visits, touched.visitors)
        by_visit = [s for _, s in loaded.values() if (s.site, s.visit) in touched.visits]
        visitors = touched.visitors | rollups.affected_visitors(by_visit, sessions)
        more = visitors - touched.visitors
        if more:
            loaded |= _slots(conn, set(), more)
        stored = [slot for _, slot in loaded.values()]
        named = {(s.site, s.visit) for s in stored if s.visit} | touched.visits
        rows = _visit_rows(conn, named)
        facts = {visit: visit_facts for visit, (_, visit_facts) in rows.items()}
        if all(s.session_id for s in sessions):  # each one's visit is in ``named``
            visit_rows = {visit: rowid for visit, (rowid, _) in rows.items()}
        change = rollups.change(stored, facts, counted, sessions, visitors, keys, segments)
        counts = change.counts
        replaced = [loaded[s.key][0] for s in change.slots if s.key in loaded]
        if replaced:
            conn.execute(
                "DELETE FROM rollup_slots WHERE rowid IN (SELECT unnest($ids::BIGINT[]))",
                {"ids": replaced},
            )
        _append(
            conn,
            "rollup_slots",
            ("VARCHAR", "VARCHAR", "VARCHAR", "BIGINT", "VARCHAR"),
            [(*s.key, _slot_text(s)) for s in change.slots],
        )
        appended += _append(
            conn, "rollups", _COUNT_TYPES, [(*k, *v) for k, v in change.counts.items()]
        )
        if change.counts:
            lowest = min(k[3] for k in change.counts)
    appended += _append(conn, "rollup_sums", _SUM_TYPES, [(*k, *v) for k, v in sums.items()])
    appended += _append(conn, "rollup_loads", _LOAD_TYPES, [(*k, n) for k, n in loads.items()])
    hours = [k[3] for k in sums] + [k[1] for k in loads]
    if hours:
        lowest = min(hours) if lowest is None else min(lowest, *hours)
    return rollup_views.Deltas(counts, sums, loads), appended, lowest, visit_rows


def stop_at(conn: Connection, sites: Iterable[str]) -> None:
    """A write that keeps no rollups (``DuckDBStore(rollups=False)``): the rollups of its
    sites no longer hold everything, so they answer nothing until ``rebuild``."""
    if sites:
        conn.execute(
            "INSERT INTO rollup_state SELECT unnest($s::VARCHAR[]), $max ON CONFLICT (site_id) "
            "DO UPDATE SET rollup_from = excluded.rollup_from",
            {"s": sorted(sites), "max": 2**63 - 1},
        )


def compact(conn: Connection, from_hour: int) -> None:
    """Fold the delta rows of periods ``>= from_hour`` into one row per key (dropping keys
    that sum to nothing). Same answers before and after: every read sums."""
    keyed = {
        "rollups": (("site_id", "dim", "value", "hour", "prev"), rollups.FIELDS),
        "rollup_sums": (("site_id", "dim", "value", "hour"), rollups.SUMS),
        "rollup_loads": (("site_id", "hour", "load_ms"), ("n",)),
    }
    for table, (keys, values) in keyed.items():
        sums = ", ".join(f"sum({v})::BIGINT AS {v}" for v in values)
        nonzero = " OR ".join(f"sum({v}) <> 0" for v in values)
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE compacted AS SELECT {', '.join(keys)}, {sums} "
            f"FROM {table} WHERE hour >= $h GROUP BY ALL HAVING {nonzero}",
            {"h": from_hour},
        )
        conn.execute(f"DELETE FROM {table} WHERE hour >= $h", {"h": from_hour})
        # in key order: each row group then holds few (site, property) pairs, and a query's
        # filter on them skips the others by their min/max
        conn.execute(f"INSERT INTO {table} SELECT * FROM compacted ORDER BY ALL")
    conn.execute("DROP TABLE IF EXISTS compacted")


def forget_before(conn: Connection, cutoff_ms: int, site_id: str | None = None) -> None:
    """Retention (of every site, or one): the periods that lost events are no longer answered
    from the rollups (``rollup_from`` moves past them) and the rows wholly before go."""
    first_whole = rollups.slot_after(cutoff_ms)
    conn.execute(
        "INSERT INTO rollup_state SELECT DISTINCT site_id, $f FROM "
        "(SELECT site_id FROM events UNION SELECT site_id FROM sites UNION "
        "SELECT site_id FROM rollup_state) WHERE $s IS NULL OR site_id = $s "
        "ON CONFLICT (site_id) DO UPDATE SET rollup_from = "
        "greatest(rollup_state.rollup_from, excluded.rollup_from)",
        {"f": first_whole, "s": site_id},
    )
    below = rollups.slot_of(cutoff_ms)
    for table in TABLES:
        conn.execute(
            f"DELETE FROM {table} WHERE hour < $b AND ($s IS NULL OR site_id = $s)",
            {"b": below, "s": site_id},
        )


def forget_visitors(
    conn: Connection, site_id: str, visitors: Sequence[str], events: Sequence[ProcessedEvent]
) -> None:
    """Take back everything these visitors count, before their events and visit rows are
    deleted (forgetting a user: their visits hold nobody else's events). ``events``: their
    stored events (for the sums and load times)."""
    if not visitors:
        return
    loaded = _slots(conn, set(), {(site_id, v) for v in visitors})
    slots = [slot for _, slot in loaded.values()]
    facts = _facts(conn, {(s.site, s.visit) for s in slots if s.visit})
    segmented = segments_of(conn, [site_id])
    counts = rollups.take_back(slots, facts, segmented)
    _append(conn, "rollups", _COUNT_TYPES, [(*k, *v) for k, v in counts.items()])
    keys = rollups.keys_of(prop_keys(conn, [site_id]))
    sums = rollups.event_sums(events, -1, keys, segmented)
    _append(conn, "rollup_sums", _SUM_TYPES, [(*k, *v) for k, v in sums.items()])
    loads = rollups.load_counts(events, -1)
    _append(conn, "rollup_loads", _LOAD_TYPES, [(*k, n) for k, n in loads.items()])
    if loaded:
        conn.execute(
            "DELETE FROM rollup_slots WHERE rowid IN (SELECT unnest($ids::BIGINT[]))",
            {"ids": [rowid for rowid, _ in loaded.values()]},
        )


# -- reading -------------------------------------------------------------------------------


def usable(query: StatsQuery, group: str | None, buckets: Sequence[int] | None) -> bool:
    """Whether the query's shape can be answered from the rollups (the data check follows):
    no filter, or one ``property == value`` filter (the rows of that value of the property;
    a breakdown then only by that property); no group, or a rolled-up one."""
    only = rollups.only_value(query)
    if query.filters and only is None:
        return False
    dim = group if only is None else only[0]
    if only is not None and group not in (None, dim):
        if rollups.segment_of(query, group) is None:
            return False
        dim = group  # a segment's breakdown: its rows by the group (``answer``)
    if dim is not None:
        if group is not None and _PERCENTILES.intersection(query.metrics):
            return False  # under a filter, an aggregate's percentiles come from a scan
        if dim not in rollups.DIMS and not dim.startswith(PROP_PREFIX):
            return False
        if dim in SESSION_PROPERTIES and rollup_views.SUMMED.intersection(query.metrics):
            return False  # the sums keep the events' own properties only
    return not buckets or all(start % rollups.SLOT == 0 for start in buckets[1:])


def _covered(
    conn: Connection,
    query: StatsQuery,
    group: str | None,
    segment: rollups.Segment | None = None,
) -> bool:
    """Whether the rollup periods of the range hold exactly the range's events: the site's
    rollups start at or before them (and its custom property's, for a ``prop:`` group, and
    the segment's, for a segment's breakdown), and no stored event lies in the edges the
    range leaves of its first and last half hour (each edge a plain range on ``ts``, so the
    row groups' min/max skip all but the newest data; an aligned edge is empty and not
    asked)."""
    lo, hi = rollups.slot_of(query.range.start), rollups.slot_after(query.range.end)
    params: dict[str, Any] = {"s": query.site_id, "none": rollups.NONE}
    if group is not None and group.startswith(PROP_PREFIX):
        row = conn.execute(
            "SELECT from_slot FROM rollup_props WHERE site_id = $s AND key = $k",
            {"s": query.site_id, "k": group[len(PROP_PREFIX) :]},
        ).fetchone()
        if row is None or lo < int(row[0]):
            return False
    if segment is not None:
        start = segments(conn, [query.site_id]).get(query.site_id, {}).get(segment)
        if start is None or lo < start:
            return False
    edges = []
    for name, (start, end) in {"a": (lo, query.range.start), "b": (query.range.end, hi)}.items():
        if start < end:
            params[f"{name}0"], params[f"{name}1"] = start, end
            edges.append(
                f"EXISTS (SELECT 1 FROM events WHERE site_id = $s "
                f"AND ts >= ${name}0 AND ts < ${name}1)"
            )
    row = conn.execute(
        "SELECT coalesce((SELECT rollup_from FROM rollup_state WHERE site_id = $s), $none), "
        + (" OR ".join(edges) if edges else "FALSE"),
        params,
    ).fetchone()
    return row is not None and lo >= int(row[0]) and not row[1]


def _groups(view: rollup_views.View) -> tuple[str, str]:
    """The SQL group of a rollup row in ``view``, and the start its chains count from."""
    if view.starts is not None:
        return "k.b", "greatest(k.b, $lo)"
    return ("value" if view.dim else "0"), "$lo"


def _join(view: rollup_views.View) -> str:
    if view.starts is None:
        return ""
    return "ASOF JOIN (SELECT unnest($starts::BIGINT[]) AS b) k ON r.hour >= k.b"


def _params(view: rollup_views.View, sql: str) -> dict[str, Any]:
    params: dict[str, Any] = {"site": view.site, "dim": view.dim, "lo": view.lo, "hi": view.hi}
    if view.starts is not None:
        params["starts"] = rollups.slot_starts(view.starts)
    if view.only is not None:
        params["only"] = view.only
    return {k: v for k, v in params.items() if f"${k}" in sql}


_WHERE: Final = "WHERE site_id = $site AND dim = $dim AND hour >= $lo AND hour < $hi"


def _where(view: rollup_views.View) -> str:
    return _WHERE if view.only is None else f"{_WHERE} AND value = $only"


def _build(conn: Connection, key: rollup_views.ViewKey) -> rollup_views.View:
    """A view's counts from the rollup tables (sums and loads come when asked)."""
    site, dim, lo, hi, starts, only = key
    view = rollup_views.View(site, dim, lo, hi, starts, {}, only=only)
    join = _join(view)
    g, first = _groups(view)
    chained = ", ".join(f"sum({c}) FILTER (WHERE prev < {first})" for c in _CHAINED)
    sql = (
        f"SELECT {g} AS g, {chained}, sum(pageviews), sum(events) "
        f"FROM rollups r {join} {_where(view)} GROUP BY 1"
    )
    for group, *fields in conn.execute(sql, _params(view, sql)).fetchall():
        view.counts[_view_group(view, group)] = rollup_views.numbers(int(f or 0) for f in fields)
    return view


def _group(value: Any) -> rollup_views.Group:
    """A group from a row: a value's string interned (the counts and sums of a view, and the
    views of one site, then share one string per value)."""
    return sys.intern(value) if isinstance(value, str) else int(value)


def _view_group(view: rollup_views.View, value: Any) -> rollup_views.Group:
    """A view's group from a row: ``_group``, and a bucket by its start (the SQL groups the
    first bucket by the slot holding its start: ``rollups.slot_starts``)."""
    group = _group(value)
    if view.starts is not None and group == rollups.slot_of(view.starts[0]):
        return view.starts[0]
    return group


def _add_sums(conn: Connection, view: rollup_views.View) -> None:
    join = _join(view)
    g, _ = _groups(view)
    parts = ", ".join(f"sum({c})" for c in rollups.SUMS)
    sql = f"SELECT {g} AS g, {parts} FROM rollup_sums r {join} {_where(view)} GROUP BY 1"
    view.sums = {
        _view_group(view, group): rollup_views.numbers(int(p or 0) for p in parts)
        for group, *parts in conn.execute(sql, _params(view, sql)).fetchall()
    }


def _add_loads(conn: Connection, view: rollup_views.View) -> None:
    join = _join(view)
    g = "k.b" if view.starts is not None else "0"
    sql = (
        f"SELECT {g} AS g, load_ms, sum(n) AS n FROM rollup_loads r {join} "
        "WHERE site_id = $site AND hour >= $lo AND hour < $hi GROUP BY ALL HAVING sum(n) <> 0"
    )
    loads: dict[rollup_views.Group, Counter[int]] = {}
    for group, value, n in conn.execute(sql, _params(view, sql)).fetchall():
        loads.setdefault(_view_group(view, group), Counter())[int(value)] = int(n)
    view.loads = loads


def answer(
    conn: Connection,
    views: rollup_views.Views,
    query: StatsQuery,
    *,
    group: str | None = None,
    buckets: Sequence[int] | None = None,
    now_ms: int | None = None,
) -> list[Row] | None:
    """Rows of ``COLUMNS`` from the rollups, or None if the data does not allow it (run as
    one job on the store's thread, after ``usable``): from the query's view, built from the
    tables the first time its shape is asked. A segment's breakdown notes the segment as
    asked at ``now_ms``, registering it if it is new (``want``); None: a read-only store,
    which notes nothing."""
    only = rollups.only_value(query)
    dim, value = only if only is not None else (group or "", None)
    segment = rollups.segment_of(query, group)
    if segment is not None and group is not None:
        if now_ms is not None:  # past a batch's cache of SELECTs (``batch.Repeating``)
            want(getattr(conn, "direct", conn), query.site_id, segment, now_ms, views)
        if not _covered(conn, query, group, segment):
            return None
        dim, value = rollups.segment_dim(*segment, group), None
    elif not _covered(conn, query, dim or None):
        return None
    lo, hi = rollups.slot_of(query.range.start), rollups.slot_after(query.range.end)
    starts = tuple(buckets) if buckets else None
    key = (query.site_id, dim, lo, hi, starts, value)
    view = views.get(key)
    if view is None:
        view = _build(conn, key)
        views.put(view)
    grew = False
    if view.sums is None and rollup_views.SUMMED.intersection(query.metrics):
        _add_sums(conn, view)
        grew = True
    if not dim and view.loads is None and _PERCENTILES.intersection(query.metrics):
        _add_loads(conn, view)
        grew = True
    if grew:
        views.put(view)  # the bounds again, with what it holds now
    rows = view.rows(query, grouped=group is not None)
    if only is not None and group is None and _PERCENTILES.intersection(query.metrics):
        rows = _with_percentiles(conn, query, rows, buckets)
    return rows


def _with_percentiles(
    conn: Connection, query: StatsQuery, rows: list[Row], buckets: Sequence[int] | None
) -> list[Row]:
    """``rows`` (an aggregate or timeseries under one filter) with their load-time
    percentiles, which the rollups keep per site only: from a scan of the filtered
    pageviews' load times (no distinct counts), grouped as ``rows``."""
    asked = tuple(m for m in query.metrics if m in _PERCENTILES)
    sql, params = stats.stats_sql(replace(query, metrics=asked), buckets=list(buckets or []))
    found = {_group(row[0]): row[8:10] for row in conn.execute(sql, params).fetchall()}
    return [(*row[:8], *found.get(_key(row[0], buckets), (None, None)), *row[10:]) for row in rows]


def _key(group: Any, buckets: Sequence[int] | None) -> Any:
    """A row's group as the scan names it: its bucket, or (an aggregate, whose rollup row is
    named by the filter's value) the scan's one group, 0."""
    return group if buckets else 0


# -- rebuilding ----------------------------------------------------------------------------

_REBUILD_WINDOW: Final = 12 * rollups.SLOT
"""Events are read six hours at a time: a window's events are in memory at once."""


def rebuild(conn: Connection, columns: Sequence[str], event: Any) -> int:
    """Recompute every rollup from the stored events and visit rows; return the events read.

    Until it ends, every site's ``rollup_from`` is past every period (queries scan raw
    events), so each window of events commits on its own; the visit rows are as stored.
    ``event`` turns a row of ``columns`` into a ProcessedEvent. Order does not matter to the
    rollups (``rollups.change`` is exact for late events), so windows are read as found."""
    conn.execute("BEGIN")
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")
    conn.execute("DELETE FROM rollup_state")
    conn.execute("DELETE FROM rollup_props")
    conn.execute("UPDATE rollup_segments SET from_slot = $none", {"none": rollups.NONE})
    # every site's custom property keys, the first it sent first, rolled up from the start
    conn.execute(
        "INSERT INTO rollup_props SELECT site_id, key, $none FROM (SELECT site_id, key, "
        "row_number() OVER (PARTITION BY site_id ORDER BY first, key) AS n FROM (SELECT "
        "site_id, key, min(ts) AS first FROM (SELECT site_id, ts, unnest(map_keys(props)) "
        "AS key FROM events) GROUP BY ALL)) WHERE n <= $most",
        {"none": rollups.NONE, "most": rollups.PROP_KEYS_PER_SITE},
    )
    conn.execute(  # a segment of a custom property needs the key rolled up
        "DELETE FROM rollup_segments s WHERE starts_with(dim, $p) AND NOT EXISTS (SELECT 1 "
        "FROM rollup_props k WHERE k.site_id = s.site_id AND $p || k.key = s.dim)",
        {"p": PROP_PREFIX},
    )
    conn.execute(
        "INSERT INTO rollup_state SELECT site_id, $max FROM "
        "(SELECT site_id FROM events UNION SELECT site_id FROM sites)",
        {"max": 2**63 - 1},
    )
    conn.execute("COMMIT")
    total = 0
    select = f"SELECT {', '.join(columns)} FROM events WHERE ts >= $a AND ts < $b"
    row = conn.execute("SELECT min(ts) FROM events").fetchone()
    start = None if row is None or row[0] is None else rollups.slot_of(int(row[0]))
    while start is not None:
        end = start + _REBUILD_WINDOW
        chunk = [event(r) for r in conn.execute(select, {"a": start, "b": end}).fetchall()]
        conn.execute("BEGIN")
        sites = {e.site_id for e in chunk}
        keep(conn, chunk, [], register(conn, chunk), segments_of(conn, sites))
        conn.execute("COMMIT")
        total += len(chunk)
        row = conn.execute("SELECT min(ts) FROM events WHERE ts >= $b", {"b": end}).fetchone()
        start = None if row is None or row[0] is None else rollups.slot_of(int(row[0]))
    conn.execute("BEGIN")
    compact(conn, rollups.NONE)
    conn.execute("DELETE FROM rollup_state")
    conn.execute("COMMIT")
    return total
