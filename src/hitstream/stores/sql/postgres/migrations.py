"""Schema migrations for PostgreSQL: numbered files applied once each, in order, under a lock.

Several processes (collectors, processors, web) start together and each runs ``migrate``; a
session-level advisory lock makes them take turns, so exactly one applies a pending file and
the others find it recorded in ``schema_migrations``. Each file and its record commit together.
"""

from __future__ import annotations

from contextlib import suppress
from importlib import resources
from typing import Any, Final

import psycopg

MIGRATION_LOCK: Final = 0x68_73_6D_69_67_72_61_74
"""Advisory lock key ("hsmigrat"); per database, so it also orders schemas of one database."""


def migration_files() -> list[tuple[str, str]]:
    """(name, SQL) of every packaged migration, in name order."""
    folder = resources.files("hitstream.stores.sql.postgres")
    found = [
        (item.name.removesuffix(".sql"), item.read_text(encoding="utf-8"))
        for item in folder.iterdir()
        if item.name.endswith(".sql")
    ]
    return sorted(found)


async def apply_pending(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Apply what ``schema_migrations`` does not list yet; return the names applied.

    ``conn`` must be in autocommit mode: the advisory lock belongs to the session, and each
    migration runs in a transaction of its own.
    """
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT name FROM schema_migrations")
        done = {row[0] for row in await cursor.fetchall()}
        applied: list[str] = []
        for name, text in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(text.encode())  # no parameters: several statements at once
                await conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            applied.append(name)
        return applied
    finally:
        with suppress(psycopg.Error):  # a broken session has released its lock anyway
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
