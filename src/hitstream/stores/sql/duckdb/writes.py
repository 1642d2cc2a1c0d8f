"""The statements of one DuckDB write: a processor batch as a few set-based statements.

Why the batch travels as one string: every Python value handed to DuckDB costs ~0.3-0.6 us to
convert, through list parameters and the appender alike, which for 5,000 events x 32 columns
is 60-110 ms. Joined into ONE string (fields by U+001F, rows by U+001E) that SQL splits back
into columns, the same batch takes ~15 ms to build and ~8 ms to split. If any field contains
a separator, the counts of separators no longer add up and that batch goes as one list
parameter per column instead: slower, exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from operator import attrgetter
from typing import Final

import duckdb

from hitstream.domain.events import ProcessedEvent, Props, Session
from hitstream.domain.measures import prop_text
from hitstream.stores.base import WriteBatch
from hitstream.stores.sql.common import EVENT_TEXT, SESSION_COLUMNS, SESSION_INTS, SESSION_TEXT

Statement = tuple[str, dict[str, object]]


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN; COMMIT when the block ends, ROLLBACK (and the error goes on) if it raises."""
    conn.execute("BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with suppress(duckdb.Error):
            conn.execute("ROLLBACK")
        raise


_US: Final = "\x1f"
_RS: Final = "\x1e"
_EVENT_INTS: Final = (
    ("ts", "timestamp"),
    ("received_at", "received_at"),
    ("screen_width", "screen_width"),
    ("duration_ms", "duration_ms"),
    ("load_time_ms", "load_time_ms"),
    ("engaged_ms", "engaged_ms"),
    ("scroll_depth", "scroll_depth"),
)
_event_text = attrgetter(*EVENT_TEXT)
_event_ints = attrgetter(*(attr for _, attr in _EVENT_INTS))
_session_text = attrgetter(*SESSION_TEXT)
_session_ints = attrgetter(*SESSION_INTS)


def _props_json(props: Props) -> str:
    if not props:
        return "{}"
    return json.dumps({k: prop_text(v) for k, v in props.items()}, ensure_ascii=False)


def _event_row(e: ProcessedEvent) -> str:
    # the hot loop of a write: integers as Python prints them, None as "None"
    return (
        f"{_US.join(_event_text(e))}\x1f{e.timestamp}\x1f{e.received_at}\x1f{e.screen_width}"
        f"\x1f{e.duration_ms}\x1f{e.load_time_ms}\x1f{e.engaged_ms}\x1f{e.scroll_depth}"
        f"\x1f{_props_json(e.props)}"
    )


def _event_fields(e: ProcessedEvent) -> list[str]:
    return [*_event_text(e), *map(str, _event_ints(e)), _props_json(e.props)]


def _session_row(s: Session) -> str:
    text = _US.join(_session_text(s))
    return f"{text}\x1f{s.started_at}\x1f{s.last_seen}\x1f{s.pageviews}\x1f{s.events}"


def _session_fields(s: Session) -> list[str]:
    return [*_session_text(s), *map(str, _session_ints(s))]


def _source(
    rows: list[str], fields: Callable[[], list[list[str]]], width: int, params: dict[str, object]
) -> str:
    """A SELECT of VARCHAR columns ``c0 .. c{width-1}``, one row per item of ``rows``."""
    packed = _RS.join(rows)
    if packed.count(_US) == len(rows) * (width - 1) and packed.count(_RS) == len(rows) - 1:
        params["packed"] = packed
        columns = ", ".join(f"l[{i + 1}] AS c{i}" for i in range(width))
        split = "string_split(unnest(string_split($packed, chr(30))), chr(31))"
        return f"SELECT {columns} FROM (SELECT {split} AS l)"
    table = fields()  # a field holds a separator (rare): one list parameter per column
    for i in range(width):
        params[f"c{i}"] = [row[i] for row in table]
    return "SELECT " + ", ".join(f"unnest($c{i}::VARCHAR[]) AS c{i}" for i in range(width))


def _integer(column: str) -> str:
    return f"CAST(nullif({column}, 'None') AS BIGINT)"


def insert_events(events: Sequence[ProcessedEvent], *, skip_stored: bool) -> Statement:
    """Insert events. ``skip_stored`` adds ON CONFLICT DO NOTHING, which costs ~40 ms a batch,
    so the adapter first tries without it and falls back when the primary key objects."""
    n_text, n_ints = len(EVENT_TEXT), len(_EVENT_INTS)
    params: dict[str, object] = {}
    rows = [_event_row(e) for e in events]
    source = _source(rows, lambda: [_event_fields(e) for e in events], n_text + n_ints + 1, params)
    exprs = [f"c{i}" for i in range(n_text)]
    exprs += [_integer(f"c{n_text + i}") for i in range(n_ints)]
    exprs.append(f"CAST(CAST(c{n_text + n_ints} AS JSON) AS MAP(VARCHAR, VARCHAR))")
    columns = ", ".join([*EVENT_TEXT, *(column for column, _ in _EVENT_INTS), "props"])
    sql = f"INSERT INTO events ({columns}) SELECT {', '.join(exprs)} FROM ({source})"
    return (sql + " ON CONFLICT DO NOTHING" if skip_stored else sql), params


IDS_PER_STATEMENT: Final = 1_000
"""Ids per ``IN`` list of literals: DuckDB scans an index for up to 2,048 values and joins
the whole table beyond (``rollups._by_ids`` keeps the same bound)."""


def literal(text: str) -> str:
    """A SQL string literal of ``text``."""
    return "'" + text.replace("'", "''") + "'"


def upsert_sessions(
    sessions: Sequence[Session], stored: Mapping[tuple[str, str], int] | None = None
) -> list[Statement]:
    """The visit rows, replacing stored ones: the stored rows of these visits are deleted
    through the index on ``session_id`` (ids as literals, so that the index is used), then
    all are inserted. ``INSERT ... ON CONFLICT DO UPDATE`` did the same in one statement but
    cost ~110 ms at 2 M visits whatever the batch (measured at 10 M events: 25 visits).
    ``stored``: (site, visit) -> rowid of each stored row of these visits, when the write
    looked them up already (the rollups do): those rows are deleted by rowid, ~20 times
    cheaper than finding them again."""
    statements: list[Statement] = []
    if stored is not None:
        keys = {(s.site_id, s.session_id) for s in sessions}
        rowids = sorted(rowid for visit, rowid in stored.items() if visit in keys)
        if rowids:
            statements.append(
                (
                    "DELETE FROM sessions WHERE rowid IN (SELECT unnest($ids::BIGINT[]))",
                    {"ids": rowids},
                )
            )
    ordered = [] if stored is not None else sorted({(s.site_id, s.session_id) for s in sessions})
    for at in range(0, len(ordered), IDS_PER_STATEMENT):
        chunk = ordered[at : at + IDS_PER_STATEMENT]
        ids = ", ".join(literal(visit) for visit in sorted({visit for _, visit in chunk}))
        pairs = ", ".join(literal(f"{site}{_US}{visit}") for site, visit in chunk)
        statements.append(
            (
                f"DELETE FROM sessions WHERE session_id IN ({ids}) "
                f"AND site_id || chr(31) || session_id IN ({pairs})",
                {},
            )
        )
    n_text = len(SESSION_TEXT)
    params: dict[str, object] = {}
    rows = [_session_row(s) for s in sessions]
    source = _source(
        rows, lambda: [_session_fields(s) for s in sessions], len(SESSION_COLUMNS), params
    )
    exprs = [f"c{i}" for i in range(n_text)]
    exprs += [_integer(f"c{n_text + i}") for i in range(len(SESSION_INTS))]
    sql = (
        f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) SELECT {', '.join(exprs)} "
        f"FROM ({source})"
    )
    return [*statements, (sql, params)]


def bump_sites(sites: list[str]) -> Statement:
    return (
        "INSERT INTO sites SELECT unnest($sites::VARCHAR[]), 1 ON CONFLICT (site_id) "
        "DO UPDATE SET data_version = sites.data_version + 1",
        {"sites": sites},
    )


def batch_rows(batch: WriteBatch) -> tuple[list[ProcessedEvent], list[Session]]:
    """The batch's events, the first copy of an id winning, and its visit rows, the last
    copy of a visit winning."""
    first: dict[str, ProcessedEvent] = {}
    for event in batch.events:
        first.setdefault(event.event_id, event)
    sessions = list({(s.site_id, s.session_id): s for s in batch.sessions}.values())
    return list(first.values()), sessions


def rest_statements(
    batch: WriteBatch,
    events: Sequence[ProcessedEvent],
    sessions: Sequence[Session],
    stored: Mapping[tuple[str, str], int] | None = None,
) -> list[Statement]:
    """The visit rows and drops of a write, after the events' insert (``finish`` then bumps
    the data versions and moves the positions); ``stored`` as ``upsert_sessions``'s."""
    statements: list[Statement] = []
    if sessions:
        statements += upsert_sessions(sessions, stored)
    if batch.drops:
        keys = list(batch.drops)
        statements.append(
            (
                "INSERT INTO drops SELECT unnest($s::VARCHAR[]), unnest($r::VARCHAR[]), "
                "unnest($n::BIGINT[]) ON CONFLICT (site_id, reason) "
                "DO UPDATE SET count = drops.count + excluded.count",
                {
                    "s": [s for s, _ in keys],
                    "r": [r for _, r in keys],
                    "n": [*batch.drops.values()],
                },
            )
        )
    return statements


def written_sites(
    batch: WriteBatch, events: Sequence[ProcessedEvent], sessions: Sequence[Session]
) -> list[str]:
    """Every site the batch names (its data version moves even when all its events were
    stored already)."""
    sites = {e.site_id for e in batch.events} | {s.site_id for s in sessions}
    sites |= {e.site_id for e in events} | {site for site, _ in batch.drops}
    return sorted(sites)


def upsert_positions(stream: str, positions: Mapping[int, int]) -> Statement:
    return (
        "INSERT INTO positions SELECT $stream, unnest($p::BIGINT[]), unnest($o::BIGINT[]) "
        "ON CONFLICT (stream, partition) DO UPDATE SET next_offset = excluded.next_offset",
        {"stream": stream, "p": [*positions], "o": [*positions.values()]},
    )


_FEW: Final = 64
"""Up to this many sites a write bumps by UPDATE with literals."""


def finish(conn: duckdb.DuckDBPyConnection, batch: WriteBatch, sites: Sequence[str]) -> None:
    """The last statements of a write: the data version of each of ``sites`` goes up by one
    (a new site's starts at 1) and the log positions move. An UPDATE of rows that exist
    costs ~1 ms where DuckDB's ``INSERT ... ON CONFLICT DO UPDATE`` costs ~2.5 ms, and a
    quiet site's write is mostly such fixed costs, so the upserts run only for what the
    UPDATE did not find."""
    if sites and len(sites) <= _FEW:
        listed = ", ".join(map(literal, sites))
        found = conn.execute(
            f"UPDATE sites SET data_version = data_version + 1 WHERE site_id IN ({listed})"
        ).fetchall()[0][0]
        if found < len(sites):
            conn.execute(
                "INSERT INTO sites SELECT s, 1 FROM (SELECT unnest($s::VARCHAR[]) AS s) "
                "WHERE s NOT IN (SELECT site_id FROM sites)",
                {"s": list(sites)},
            )
    elif sites:
        conn.execute(*bump_sites(list(sites)))
    if len(batch.positions) == 1:
        [(partition, offset)] = batch.positions.items()
        moved = conn.execute(
            "UPDATE positions SET next_offset = $o WHERE stream = $s AND partition = $p",
            {"o": offset, "s": batch.stream, "p": partition},
        ).fetchall()[0][0]
        if moved == 1:
            return
    if batch.positions:
        conn.execute(*upsert_positions(batch.stream, batch.positions))


def write_statements(batch: WriteBatch, *, skip_stored: bool) -> list[Statement]:
    """Every statement of a batch without rollups, events first (``benchmarks/write_profile``
    times them one by one)."""
    events, sessions = batch_rows(batch)
    statements: list[Statement] = []
    if events:
        statements.append(insert_events(events, skip_stored=skip_stored))
    statements += rest_statements(batch, events, sessions)
    sites = written_sites(batch, events, sessions)
    if sites:
        statements.append(bump_sites(sites))
    if batch.positions:
        statements.append(upsert_positions(batch.stream, batch.positions))
    return statements
