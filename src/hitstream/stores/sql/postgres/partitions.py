"""Monthly partitions of ``events``: created on demand before a write, dropped by retention.

A partition ``events_mYYYYMM`` holds the UTC calendar month ``[lo, hi)`` of ``ts``. Creating
one takes a transaction-level advisory lock, so processors that reach a new month together
create it once; rows that reached the DEFAULT partition for that month meanwhile are moved
into it before it is attached (attaching would fail otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

PARTITIONED_UNTIL: Final = 7_258_118_400_000
"""2200-01-01 UTC: later times, and times before 1970, stay in the DEFAULT partition."""
PARTITION_LOCK: Final = 0x68_73_70_61_72_74_73_00
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY: Final = 86_400_000
_NAME: Final = re.compile(r"events_m(\d{4})(\d{2})")


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def months_of(timestamps: Iterable[int]) -> set[int]:
    """The months (``YYYYMM``) that need a partition to hold these timestamps."""
    days = {ts // _DAY for ts in timestamps if 0 <= ts < PARTITIONED_UNTIL}
    months = set()
    for day in days:
        moment = _EPOCH + timedelta(days=day)
        months.add(moment.year * 100 + moment.month)
    return months


def bounds(month: int) -> tuple[int, int]:
    """``[lo, hi)`` in epoch ms of a month ``YYYYMM``."""
    year, number = divmod(month, 100)
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return _ms(start), _ms(end)


def table_name(month: int) -> str:
    return f"events_m{month:06d}"


def month_of_table(name: str) -> int | None:
    found = _NAME.fullmatch(name)
    return int(found[1]) * 100 + int(found[2]) if found else None


async def ensure(conn: psycopg.AsyncConnection[Any], months: Iterable[int]) -> None:
    """Create the partitions of these months that do not exist yet (``conn`` in autocommit)."""
    for month in sorted(months):
        name = table_name(month)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
            cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
            row = await cursor.fetchone()
            if row is not None and row[0]:
                continue
            lo, hi = bounds(month)
            table = sql.Identifier(name)
            await conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE events INCLUDING DEFAULTS)").format(table)
            )
            await conn.execute(
                sql.SQL(
                    "WITH moved AS (DELETE FROM events_default WHERE ts >= {lo} AND ts < {hi} "
                    "RETURNING *) INSERT INTO {table} SELECT * FROM moved"
                ).format(lo=sql.Literal(lo), hi=sql.Literal(hi), table=table)
            )
            await conn.execute(
                sql.SQL(
                    "ALTER TABLE events ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})"
                ).format(table, sql.Literal(lo), sql.Literal(hi))
            )


async def existing(conn: psycopg.AsyncConnection[Any]) -> dict[int, str]:
    """month -> partition name of every monthly partition attached to ``events``."""
    cursor = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass"
    )
    found: dict[int, str] = {}
    for (name,) in await cursor.fetchall():
        month = month_of_table(name)
        if month is not None:
            found[month] = name
    return found


async def drop_expired(
    conn: psycopg.AsyncConnection[Any], cutoff_ms: int
) -> tuple[int, set[str], list[int]]:
    """Inside the caller's transaction, drop every partition wholly before ``cutoff_ms``.

    Returns the rows they held, the sites those rows belonged to, and the months dropped. The
    parent is locked first (a partition's DROP needs that lock anyway), so no writer can add
    a row between the count and the drop; it happens once a month per partition.
    """
    expired = [
        (m, n) for m, n in sorted((await existing(conn)).items()) if bounds(m)[1] <= cutoff_ms
    ]
    rows, sites, dropped = 0, set[str](), []
    if expired:
        await conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    for month, name in expired:
        table = sql.Identifier(name)
        cursor = await conn.execute(
            sql.SQL("SELECT site_id, count(*) FROM {} GROUP BY site_id").format(table)
        )
        for site_id, count in await cursor.fetchall():
            sites.add(site_id)
            rows += int(count)
        await conn.execute(sql.SQL("DROP TABLE {}").format(table))
        dropped.append(month)
    return rows, sites, dropped
