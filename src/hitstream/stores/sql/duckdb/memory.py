"""DuckDB's memory limit as a target, not a wall (decision 0032): a job that does not fit
under it runs once more without it, and the store sets it again later."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import duckdb

T = TypeVar("T")


def with_memory(
    conn: Any,
    memory_mb: int,
    what: str,
    job: Callable[[], T],
    lifted: Callable[[str, str], None],
) -> T:
    """``job()``; if DuckDB runs out of memory under the store's limit (``memory_mb``, decision
    0032), once more under DuckDB's own limit, after calling ``lifted(what, reason)`` (the
    store sets its limit again later: ``DuckDBStore._lifted``). The limit keeps ``serve``
    small while it can; a scan that cannot fit in it (a filtered breakdown over months of
    raw events) or a write that cannot (indexes of a big store under heavy ingest) gets more
    memory instead of failing. ``job`` must leave nothing behind when it fails: a read, or
    one write transaction (rolled back)."""
    try:
        return job()
    except duckdb.OutOfMemoryException as exc:
        if not memory_mb:
            raise
        lifted(what, str(exc).splitlines()[0])
    conn.execute("RESET memory_limit")
    return job()
