"""Goals and funnels in SQL, for both dialects: the statement shapes, with the dialect's spelling
of a property, a parameter and a whole-string regular expression match passed in.

- A ``goal`` filter clause becomes the OR of its goals' predicates (``==``) or its negation
  (``!=``): a pageview goal tests ``type`` and the path against ``pattern_regex`` (the same
  expression Python matches), a custom-event goal tests ``type``, ``name`` and the props.
- A funnel (``hitstream.domain.funnels``): ``m`` holds the matching events of visits that pass
  some step, numbered in visit order (``ts``, then ``event_id`` in code point order) with a
  flag per step; ``c1`` has a row per event passing step 1 (a start), and ``ck`` adds, per
  start, the earliest later event passing step k (``min(pos)``; its ``ts`` is the least too,
  as positions follow time). A start reaches step k when ``tk`` exists and lies within the
  window of ``t1``; a visit's depth is its best start's, and each step counts the distinct
  visitors of the visits that reached it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hitstream.domain.events import EventType
from hitstream.domain.goals import Goal, named, pattern_regex
from hitstream.domain.stats import Filter
from hitstream.stores.sql.common import Params

Spell = Callable[[str], str]
"""A property (API name) -> its SQL value."""


def goal_sql(
    flt: Filter,
    goals: Sequence[Goal],
    params: Params,
    *,
    prop: Spell,
    text: Spell,
    regex: Callable[[str, str], str],
) -> str:
    """The SQL condition of one ``goal`` clause. ``text`` spells a text parameter; ``regex``
    (value, pattern placeholder) a whole match of the pattern written by ``full_pattern``."""
    pageview = text(params.add(EventType.PAGEVIEW.value))
    tests: list[str] = []
    for goal in named(goals, flt.values):
        if goal.page:
            tests.append(
                f"({prop('event_type')} = {pageview} AND "
                f"{regex(prop('page'), params.add(pattern_regex(goal.page)))})"
            )
            continue
        parts = [
            f"{prop('event_type')} <> {pageview}",
            f"{prop('event_name')} = {text(params.add(goal.event_name))}",
            *(f"{prop('prop:' + k)} = {text(params.add(v))}" for k, v in goal.props),
        ]
        tests.append("(" + " AND ".join(parts) + ")")
    either = "(" + " OR ".join(tests) + ")" if tests else "FALSE"
    return either if flt.op == "==" else f"(NOT {either})"


def funnel_sql(source: str, flags: Sequence[str], window_ms: int | None, order: str) -> str:
    """Visitors per step, one row of ``len(flags)`` counts. ``source``: ``FROM events e ...
    WHERE`` the query's conditions; ``flags``: each step's condition; ``order``: the visit
    order (``e.ts, e.event_id`` with the dialect's code point collation)."""
    n = len(flags)
    columns = ", ".join(f"({flag}) AS f{i + 1}" for i, flag in enumerate(flags))
    ctes = [
        "m AS (SELECT e.visitor_id AS v, e.session_id AS sid, e.ts AS ts, "
        f"row_number() OVER (PARTITION BY e.session_id ORDER BY {order}) AS pos, {columns} "
        f"{source} AND e.session_id <> '' AND ({' OR '.join(f'({f})' for f in flags)}))",
        "c1 AS (SELECT sid, pos AS p1, ts AS t1, pos AS last FROM m WHERE f1)",
    ]
    for k in range(2, n + 1):
        carried = ["c.sid", "c.p1", *(f"c.t{i}" for i in range(1, k))]
        ctes.append(
            f"c{k} AS (SELECT {', '.join(carried)}, min(m.ts) AS t{k}, min(m.pos) AS last "
            f"FROM c{k - 1} c LEFT JOIN m ON m.sid = c.sid AND m.f{k} AND m.pos > c.last "
            f"GROUP BY {', '.join(carried)})"
        )
    within = "" if window_ms is None else f" AND t{{k}} - t1 <= {int(window_ms)}"
    depth = " + ".join(
        ["1"]
        + [
            f"(CASE WHEN t{k} IS NOT NULL{within.format(k=k)} THEN 1 ELSE 0 END)"
            for k in range(2, n + 1)
        ]
    )
    ctes.append(f"d AS (SELECT sid, max({depth}) AS depth FROM c{n} GROUP BY sid)")
    ctes.append("w AS (SELECT DISTINCT sid, v FROM m)")
    counts = ", ".join(
        f"count(DISTINCT w.v) FILTER (WHERE d.depth >= {k})" for k in range(1, n + 1)
    )
    return f"WITH {', '.join(ctes)} SELECT {counts} FROM d JOIN w ON w.sid = d.sid"
