"""Row 4's next design, measured before it is built: visitor and visit chains computed
set-based inside DuckDB, against the domain's Python ``rollups.change`` on the same batches.

Not the product: a prototype of the core of decision 0024's rollups (the chains of every
event property and the totals: visitors, visits, pageviews, events per ``(site, property,
value, period, prev)``), leaving out what a real port must add (visit rows' entry/exit pages,
bounces and durations, custom property keys, segments, engagement sums). It answers one
question: how fast can a write compute and store exact chain deltas when no Python touches
each event?

Per batch (``--batch`` events, in arrival order), one transaction:
1. the batch goes in as one packed string (as the store's inserts do), and is unpivoted into
   members (one row per event and property) grouped per slot;
2. the stored member rows of the batch's visitors (``slot_members``) are read, bounded by the
   visitor ids' range (time-ordered ids, decision 0034: zone maps skip older row groups);
3. before and after (stored + batch), every visitor's and visit's chain rows come from
   ``lag(hour)`` windows; their difference is appended to ``rollups`` as deltas;
4. the visitors' member rows are replaced.

``--check N``: the sums of the deltas of the first N events must equal the domain's counts of
those events computed whole (``rollups.change(..., whole=True)``), key for key.

    .venv/bin/python -m benchmarks.setbased_proto --events 200000 --check 20000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from typing import Any

import duckdb

from benchmarks.store_bench import generate
from hitstream.domain import rollups
from hitstream.domain.events import ProcessedEvent

PROPS = [prop for prop, _ in rollups.EVENT_DIMS]
ATTRS = [attribute for _, attribute in rollups.EVENT_DIMS]
NONE = rollups.NONE

SCHEMA = f"""
CREATE TABLE slot_members (site VARCHAR, visitor VARCHAR, visit VARCHAR, hour BIGINT,
    prop VARCHAR, value VARCHAR, pageviews BIGINT, events BIGINT);
CREATE TABLE rollups (site VARCHAR, prop VARCHAR, value VARCHAR, hour BIGINT, prev BIGINT,
    visitors BIGINT, visits BIGINT, pageviews BIGINT, events BIGINT);
CREATE TABLE batch (site VARCHAR, visitor VARCHAR, visit VARCHAR, ts BIGINT,
    {", ".join(f'"{p}" VARCHAR' for p in PROPS)});
"""

LOAD = f"""
INSERT INTO batch SELECT l[1], l[2], l[3], CAST(l[4] AS BIGINT),
    {", ".join(f"l[{i + 5}]" for i in range(len(PROPS)))}
FROM (SELECT string_split(unnest(string_split($packed, chr(30))), chr(31)) AS l)
"""

MEMBERS = f"""
CREATE OR REPLACE TEMP TABLE bm AS
SELECT site, visitor, visit, ts // {rollups.SLOT} * {rollups.SLOT} AS hour,
    CASE WHEN prop = '_total' THEN '' ELSE prop END AS prop, value,
    count(*) FILTER (WHERE is_pv)::BIGINT AS pageviews, count(*)::BIGINT AS events
FROM (
    UNPIVOT (SELECT *, '' AS _total, event_type = 'pageview' AS is_pv FROM batch)
    ON COLUMNS(* EXCLUDE (site, visitor, visit, ts, is_pv))
    INTO NAME prop VALUE value
)
GROUP BY ALL
"""

OLD = """
CREATE OR REPLACE TEMP TABLE old AS
SELECT * FROM slot_members
WHERE visitor BETWEEN $lo AND $hi
  AND (site, visitor) IN (SELECT DISTINCT site, visitor FROM bm)
"""

NEW = """
CREATE OR REPLACE TEMP TABLE new AS
SELECT site, visitor, visit, hour, prop, value, sum(pageviews)::BIGINT AS pageviews,
    sum(events)::BIGINT AS events
FROM (SELECT * FROM old UNION ALL SELECT * FROM bm)
GROUP BY ALL
"""


def _chains(table: str) -> str:
    """(site, prop, value, hour, prev, visitors, visits, pageviews, events) rows of
    ``table``'s chains: a visitor's per member over its distinct periods, a visit's per member
    with the period's pageviews and events."""
    return f"""
    SELECT site, prop, value, hour,
        lag(hour, 1, {NONE}) OVER (PARTITION BY site, visitor, prop, value ORDER BY hour) AS prev,
        1 AS visitors, 0 AS visits, 0 AS pageviews, 0 AS events
    FROM (SELECT DISTINCT site, visitor, prop, value, hour FROM {table})
    UNION ALL
    SELECT site, prop, value, hour,
        lag(hour, 1, {NONE}) OVER (PARTITION BY site, visit, prop, value ORDER BY hour),
        0, 1, pv, ev
    FROM (SELECT site, visit, prop, value, hour, sum(pageviews) AS pv, sum(events) AS ev
          FROM {table} GROUP BY ALL)
    """


DELTAS = f"""
INSERT INTO rollups
SELECT site, prop, value, hour, prev, sum(s * visitors), sum(s * visits),
    sum(s * pageviews), sum(s * events)
FROM (SELECT *, 1 AS s FROM ({_chains("new")}) UNION ALL SELECT *, -1 FROM ({_chains("old")}))
GROUP BY site, prop, value, hour, prev
HAVING sum(s * visitors) <> 0 OR sum(s * visits) <> 0 OR sum(s * pageviews) <> 0
    OR sum(s * events) <> 0
"""

FORGET = """
DELETE FROM slot_members WHERE visitor BETWEEN $lo AND $hi
    AND (site, visitor) IN (SELECT DISTINCT site, visitor FROM bm)
"""
KEEP = "INSERT INTO slot_members SELECT * FROM new"


# -- the same with 64-bit hashes as keys (strings only to name the delta rows) ----------------

SCHEMA_H = SCHEMA.replace(
    "pageviews BIGINT, events BIGINT);\nCREATE TABLE rollups",
    "pageviews BIGINT, events BIGINT, vh UBIGINT, sh UBIGINT, mh UBIGINT);\nCREATE TABLE rollups",
    1,
)
MEMBERS_H = f"""
CREATE OR REPLACE TEMP TABLE bm AS
SELECT *, hash(site, visitor) AS vh, hash(site, visit) AS sh, hash(site, prop, value) AS mh
FROM ({MEMBERS.split(" AS", 1)[1].strip()})
"""
NEW_H = """
CREATE OR REPLACE TEMP TABLE new AS
SELECT site, visitor, visit, hour, prop, value, sum(pageviews)::BIGINT AS pageviews,
    sum(events)::BIGINT AS events, vh, sh, mh
FROM (SELECT * FROM old UNION ALL SELECT * FROM bm)
GROUP BY ALL
"""
DELTAS_H = f"""
INSERT INTO rollups
WITH sides AS (SELECT 1 AS s, vh, sh, mh, hour, pageviews, events FROM new
               UNION ALL SELECT -1, vh, sh, mh, hour, pageviews, events FROM old),
d AS (
    SELECT mh, hour, lag(hour, 1, {NONE}) OVER (PARTITION BY s, vh, mh ORDER BY hour) AS prev,
        s AS visitors, 0 AS visits, 0 AS pv, 0 AS ev
    FROM (SELECT DISTINCT s, vh, mh, hour FROM sides)
    UNION ALL
    SELECT mh, hour, lag(hour, 1, {NONE}) OVER (PARTITION BY s, sh, mh ORDER BY hour),
        0, s, s * pv, s * ev
    FROM (SELECT s, sh, mh, hour, sum(pageviews) AS pv, sum(events) AS ev FROM sides
          GROUP BY ALL)
),
agg AS (
    SELECT mh, hour, prev, sum(visitors) AS visitors, sum(visits) AS visits,
        sum(pv) AS pageviews, sum(ev) AS events
    FROM d GROUP BY ALL
    HAVING sum(visitors) <> 0 OR sum(visits) <> 0 OR sum(pv) <> 0 OR sum(ev) <> 0
)
SELECT m.site, m.prop, m.value, agg.hour, agg.prev, visitors, visits, pageviews, events
FROM agg JOIN (SELECT DISTINCT mh, site, prop, value FROM new) AS m USING (mh)
"""
VARIANTS = {
    "strings": (SCHEMA, MEMBERS, NEW, DELTAS),
    "hashed": (SCHEMA_H, MEMBERS_H, NEW_H, DELTAS_H),
}


def _packed(events: list[ProcessedEvent]) -> str:
    return "\x1e".join(
        "\x1f".join(
            [e.site_id, e.visitor_id, e.session_id, str(e.timestamp)]
            + [str(getattr(e, a)) for a in ATTRS]
        )
        for e in events
    )


def set_based(
    events: list[ProcessedEvent], size: int, variant: str = "strings"
) -> tuple[list[float], float, Any]:
    schema, members, new, deltas = VARIANTS[variant]
    conn = duckdb.connect(":memory:")
    conn.execute(schema)
    took: list[float] = []
    cpu0 = time.process_time()
    for at in range(0, len(events), size):
        chunk = events[at : at + size]
        began = time.perf_counter()
        visitors = [e.visitor_id for e in chunk]
        conn.execute("BEGIN")
        conn.execute("DELETE FROM batch")
        conn.execute(LOAD, {"packed": _packed(chunk)})
        conn.execute(members)
        bounds = {"lo": min(visitors), "hi": max(visitors)}
        conn.execute(OLD, bounds)
        conn.execute(new)
        conn.execute(deltas)
        conn.execute(FORGET, bounds)
        conn.execute(KEEP)
        conn.execute("COMMIT")
        took.append(time.perf_counter() - began)
    return took, time.process_time() - cpu0, conn


def in_python(events: list[ProcessedEvent], size: int) -> tuple[list[float], float]:
    """The domain's ``change`` per batch, the stored slots kept in a dict (no store at all:
    the Python part of today's write alone)."""
    stored: dict[rollups.SlotKey, rollups.Slot] = {}
    by_visitor: dict[tuple[str, str], set[rollups.SlotKey]] = defaultdict(set)
    took: list[float] = []
    cpu0 = time.process_time()
    for at in range(0, len(events), size):
        chunk = events[at : at + size]
        began = time.perf_counter()
        touched = {(e.site_id, e.visitor_id) for e in chunk}
        loaded = [stored[k] for owner in touched for k in by_visitor.get(owner, ())]
        change = rollups.change(loaded, {}, chunk, [], touched)
        for slot in change.slots:
            stored[slot.key] = slot
            by_visitor[(slot.site, slot.visitor)].add(slot.key)
        took.append(time.perf_counter() - began)
    return took, time.process_time() - cpu0


def check(events: list[ProcessedEvent], size: int, variant: str) -> int:
    """The prototype's summed deltas against the domain's whole counts: how many keys."""
    _, _, conn = set_based(events, size, variant)
    rows = conn.execute(
        "SELECT site, prop, value, hour, prev, sum(visitors), sum(visits), sum(pageviews), "
        "sum(events) FROM rollups GROUP BY ALL HAVING sum(visitors) <> 0 OR sum(visits) <> 0 "
        "OR sum(pageviews) <> 0 OR sum(events) <> 0"
    ).fetchall()
    ours = {tuple(r[:5]): tuple(int(x) for x in r[5:]) for r in rows}
    owners = {(e.site_id, e.visitor_id) for e in events}
    whole = rollups.change([], {}, events, [], owners, whole=True).counts
    order = [rollups.FIELDS.index(f) for f in ("visitors", "visits", "pageviews", "events")]
    theirs = {key: tuple(v[i] for i in order) for key, v in whole.items()}
    theirs = {key: v for key, v in theirs.items() if any(v)}
    if ours != theirs:
        missing = set(theirs) - set(ours)
        extra = set(ours) - set(theirs)
        wrong = [k for k in set(ours) & set(theirs) if ours[k] != theirs[k]]
        raise SystemExit(
            f"differs: {len(missing)} missing, {len(extra)} extra, {len(wrong)} wrong, "
            f"e.g. {next(iter(missing or extra or wrong))}"
        )
    return len(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--check", type=int, default=20_000, help="events checked (0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ids", choices=("daily", "30d"), default="daily", help="visitor ids change daily or not"
    )
    args = parser.parse_args()
    events, _ = generate(args.events, seed=11, daily_ids=args.ids == "daily")
    events.sort(key=lambda e: (e.timestamp, e.event_id))  # arrival order
    if args.check:
        for variant in VARIANTS:
            keys = check(events[: args.check], args.batch, variant)
            print(f"check {variant}: the first {args.check:,} events' {keys:,} keys agree")
    runs: list[tuple[str, Any]] = [
        (f"SQL {variant}", lambda e, b, v=variant: set_based(e, b, v)) for variant in VARIANTS
    ]
    runs.append(("Python change", in_python))
    rates: dict[str, list[float]] = defaultdict(list)
    cpus: dict[str, list[float]] = defaultdict(list)
    for repeat in range(args.repeats):  # interleaved: this machine's speed drifts
        for name, run in runs if repeat % 2 == 0 else runs[::-1]:
            result = run(events, args.batch)
            took, cpu = result[0], result[1]
            rates[name].append(len(events) / sum(took))
            cpus[name].append(cpu / len(events) * 1e6)
            print(
                f"#{repeat} {name:14} {rates[name][-1]:>9,.0f} events/s  batch median "
                f"{statistics.median(took) * 1000:6.1f} ms  CPU {cpus[name][-1]:6.1f} µs an event",
                flush=True,
            )
    for name, _ in runs:
        print(
            f"median {name:14} {statistics.median(rates[name]):>9,.0f} events/s  "
            f"CPU {statistics.median(cpus[name]):6.1f} µs an event"
        )


if __name__ == "__main__":
    main()
