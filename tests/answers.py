"""Stats answers of a store, flat, for comparing two stores (rollups against raw scans)."""

from __future__ import annotations

from typing import Any

from hitstream.domain.stats import StatsQuery
from hitstream.stores.base import Store

Answer = tuple[int, object, str, Any]
"""(query number, bucket or value or "", metric, number)."""


async def flat_answers(store: Store, asked: list[tuple[str, StatsQuery]]) -> list[Answer]:
    """Every answer to ``asked`` (``(kind, query)``, kind a Store method), flat."""
    flat: list[Answer] = []
    for number, (kind, query) in enumerate(asked):
        found = await getattr(store, kind)(query)
        rows = (
            [("", found)]
            if kind == "aggregate"
            else [(getattr(r, "bucket", None) or r.value, r.results) for r in found]
        )
        flat += [(number, key, m, v) for key, results in rows for m, v in results.items()]
    return flat
