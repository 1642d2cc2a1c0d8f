"""One processor batch as one PostgreSQL transaction: fence, dedupe, COPY, upserts, positions.

Order inside the transaction, chosen so that concurrent writers cannot race or deadlock:

1. Lock the batch's position rows (inserted first with a NULL offset if missing, so that there
   is a row to lock) in partition order, and ``check_fence`` against what they hold. A second
   processor writing the same partitions waits here until the first commits, then sees its
   offsets and gets ``PositionConflict``.
2. Claim the event ids: ``INSERT INTO event_ids ... ON CONFLICT DO NOTHING RETURNING`` in id
   order returns exactly the ids never stored before (a concurrent insert of the same id waits
   for the other transaction), and only those events are COPY'd (binary) into ``events``.
3. Keep the hourly rollups of the fresh events and the visit rows (``rollups.keep``, which
   reads the stored visit rows before they are replaced).
4. Upsert sessions (last copy in the batch wins), add drop counts, bump data versions (the hot
   row of a busy site, so it is locked as late as possible), then store the positions.

Everything is built in Python before the transaction opens; a value that does not fit a
64-bit column makes PostgreSQL refuse the statement and the whole transaction rolls back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final

import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

from hitstream.domain.events import ProcessedEvent, Props, Session
from hitstream.domain.measures import prop_text
from hitstream.stores.base import WriteBatch, check_fence
from hitstream.stores.sql.common import EVENT_TEXT, SESSION_COLUMNS, SESSION_INTS, SESSION_TEXT
from hitstream.stores.sql.postgres import rollups
from hitstream.stores.sql.postgres.partitions import months_of

EVENT_INTS: Final = (
    "ts",
    "received_at",
    "screen_width",
    "duration_ms",
    "load_time_ms",
    "engaged_ms",
    "scroll_depth",
)
_COPY_EVENTS: Final = (
    f"COPY events ({', '.join((*EVENT_TEXT, *EVENT_INTS, 'props'))}) FROM STDIN (FORMAT BINARY)"
)
_COPY_IDS: Final = "COPY event_ids (event_id, ts) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES: Final = ["text"] * len(EVENT_TEXT) + ["int8"] * len(EVENT_INTS) + ["jsonb"]
_UPSERT_SESSIONS: Final = (
    f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(["%b::text[]"] * len(SESSION_TEXT) + ["%b::bigint[]"] * len(SESSION_INTS))
    + ") ON CONFLICT (site_id, session_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SESSION_COLUMNS[2:])
)
_event_text = attrgetter(*EVENT_TEXT)
_session_row = attrgetter(*SESSION_COLUMNS)


class _JsonText(str):
    """Marks JSON that is already text (never instantiated: it only keys the dumper)."""

    __slots__ = ()


class _JsonbTextDumper(Dumper):
    """Binary jsonb from JSON text made by ``_props``: ``json.dumps`` once per event, not again
    in the driver (which would dump a dict itself)."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + str(obj).encode()


def _props(props: Props) -> str:
    if not props:
        return "{}"
    return json.dumps({k: prop_text(v) for k, v in props.items()}, ensure_ascii=False)


def event_row(e: ProcessedEvent) -> tuple[Any, ...]:
    """One COPY row, in the order of ``_COPY_EVENTS``."""
    return (
        *_event_text(e),
        e.timestamp,
        e.received_at,
        e.screen_width,
        e.duration_ms,
        e.load_time_ms,
        e.engaged_ms,
        e.scroll_depth,
        _props(e.props),
    )


@dataclass(slots=True)
class Plan:
    """A batch made ready for SQL: the first copy of each event id, the last of each session,
    the touched sites and the months whose partitions must exist."""

    events: dict[str, ProcessedEvent]
    sessions: list[Session]
    sites: list[str]
    months: set[int] = field(default_factory=set)


def plan(batch: WriteBatch) -> Plan:
    first: dict[str, ProcessedEvent] = {}
    for event in batch.events:
        first.setdefault(event.event_id, event)  # the first copy of an id wins
    last = {(s.site_id, s.session_id): s for s in batch.sessions}  # the last copy wins
    sessions = [last[key] for key in sorted(last)]  # one lock order for every writer
    sites = {e.site_id for e in first.values()} | {s.site_id for s in sessions}
    sites |= {site for site, _ in batch.drops}
    months = months_of(e.timestamp for e in first.values())
    return Plan(first, sessions, sorted(sites), months)


async def _lock_positions(cur: psycopg.AsyncCursor[Any], batch: WriteBatch) -> None:
    partitions = sorted(set(batch.starts) | set(batch.positions))
    if not partitions:
        return
    await cur.execute(
        "INSERT INTO positions (stream, partition) SELECT %s, unnest(%b::bigint[]) "
        "ON CONFLICT DO NOTHING",
        (batch.stream, partitions),
    )
    await cur.execute(
        "SELECT partition, next_offset FROM positions WHERE stream = %s "
        "AND partition = ANY(%b::bigint[]) ORDER BY partition FOR UPDATE",
        (batch.stream, partitions),
    )
    stored = {int(p): int(o) for p, o in await cur.fetchall() if o is not None}
    check_fence(batch.stream, stored, batch.starts)


async def _claim_ids(cur: psycopg.AsyncCursor[Any], events: dict[str, ProcessedEvent]) -> list[str]:
    """Insert the batch's ids into ``event_ids``; return those that were not stored yet.

    Fast path: COPY them all (half the cost of a conflict-checking insert) in a savepoint. If
    one is stored already (a replay after a crash, a client retry) the key objects, and the
    savepoint rolls back to a conflict-checking insert that returns the new ones.
    """
    ids = sorted(events)  # one lock order for concurrent writers
    try:
        async with cur.connection.transaction(), cur.copy(_COPY_IDS) as copy:
            copy.set_types(["text", "int8"])
            for event_id in ids:
                await copy.write_row((event_id, events[event_id].timestamp))
        return ids
    except psycopg.errors.UniqueViolation:
        pass
    await cur.execute(
        "INSERT INTO event_ids (event_id, ts) SELECT * FROM unnest(%b::text[], %b::bigint[]) "
        "ON CONFLICT DO NOTHING RETURNING event_id",
        (ids, [events[i].timestamp for i in ids]),
    )
    return [row[0] for row in await cur.fetchall()]


async def _insert_events(
    cur: psycopg.AsyncCursor[Any], events: dict[str, ProcessedEvent]
) -> list[ProcessedEvent]:
    """COPY the events whose ids were never stored; return them."""
    fresh = await _claim_ids(cur, events)
    if not fresh:
        return []
    cur.adapters.register_dumper(_JsonText, _JsonbTextDumper)  # set_types("jsonb") finds it
    async with cur.copy(_COPY_EVENTS) as copy:
        copy.set_types(_COPY_TYPES)
        for event_id in fresh:
            await copy.write_row(event_row(events[event_id]))
    return [events[event_id] for event_id in fresh]


async def _upsert_sessions(cur: psycopg.AsyncCursor[Any], sessions: Sequence[Session]) -> None:
    rows = [_session_row(s) for s in sessions]
    await cur.execute(_UPSERT_SESSIONS, [list(column) for column in zip(*rows, strict=True)])


async def write(conn: psycopg.AsyncConnection[Any], batch: WriteBatch, ready: Plan) -> None:
    """Apply ``batch`` (made ready by ``plan``) in one transaction; see the module docstring."""
    async with conn.transaction(), conn.cursor() as cur:
        await _lock_positions(cur, batch)
        fresh = await _insert_events(cur, ready.events) if ready.events else []
        await rollups.keep(cur, fresh, ready.sessions)  # before the visit rows change
        if ready.sessions:
            await _upsert_sessions(cur, ready.sessions)
        if batch.drops:
            keys = sorted(batch.drops)
            await cur.execute(
                "INSERT INTO drops (site_id, reason, count) "
                "SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[]) "
                "ON CONFLICT (site_id, reason) DO UPDATE SET count = drops.count + excluded.count",
                ([s for s, _ in keys], [r for _, r in keys], [batch.drops[k] for k in keys]),
            )
        if ready.sites:
            await cur.execute(*bump_sites(ready.sites))
        if batch.positions:
            partitions = sorted(batch.positions)
            await cur.execute(
                "UPDATE positions p SET next_offset = u.o "
                "FROM unnest(%b::bigint[], %b::bigint[]) AS u(p, o) "
                "WHERE p.stream = %s AND p.partition = u.p",
                (partitions, [batch.positions[p] for p in partitions], batch.stream),
            )


def bump_sites(sites: Sequence[str]) -> tuple[str, tuple[list[str]]]:
    """The statement that adds one to each site's data version (sorted: one lock order)."""
    return (
        "INSERT INTO sites (site_id, data_version) SELECT unnest(%b::text[]), 1 "
        "ON CONFLICT (site_id) DO UPDATE SET data_version = sites.data_version + 1",
        (sorted(sites),),
    )
