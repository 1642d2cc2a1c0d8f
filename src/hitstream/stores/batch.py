"""A batch of stats queries of one site, answered by one store call (``Store.stats_batch``).

A live dashboard asks ~17 queries every second. Through the control socket each single call
is a round trip to the process that holds DuckDB, and there each is a job of its own; a batch
is one round trip and one job, with the site's data version read in that job, so the version
names exactly the data the answers were computed from.

Each answer is what the single method (``aggregate``, ``timeseries``, ``breakdown``) returns
for the same query, or the error it raises (a ``QueryError`` as it was, anything else a store
failed with as ``StoreUnavailable``): one bad query fails alone, never the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hitstream.domain.stats import BreakdownRow, StatsQuery, TimeseriesPoint
from hitstream.errors import HitstreamError, QueryError, StoreUnavailable

if TYPE_CHECKING:
    from hitstream.stores.base import Store

Kind = Literal["aggregate", "timeseries", "breakdown"]


@dataclass(frozen=True, slots=True)
class StatsCall:
    """One query of a batch; ``kind`` names the store method that answers it."""

    kind: Kind
    query: StatsQuery


@dataclass(frozen=True, slots=True)
class StatsAnswer:
    """The answer to one ``StatsCall``: the field of its kind is set, or ``error`` is."""

    values: dict[str, float] | None = None
    points: list[TimeseriesPoint] | None = None
    rows: list[BreakdownRow] | None = None
    error: Literal["", "QueryError", "StoreUnavailable"] = ""
    field: str = ""
    reason: str = ""

    @classmethod
    def failed(cls, exc: HitstreamError) -> StatsAnswer:
        if isinstance(exc, QueryError):
            return cls(error="QueryError", field=exc.field, reason=exc.reason)
        return cls(error="StoreUnavailable", reason=str(exc))

    def raise_error(self) -> None:
        """Raise what the single call raised, if it did."""
        if self.error == "QueryError":
            raise QueryError(self.field, self.reason)
        if self.error:
            raise StoreUnavailable(self.reason)


@dataclass(frozen=True, slots=True)
class StatsBatch:
    """A site's data version and the answers to a batch's calls, in their order."""

    data_version: int
    answers: list[StatsAnswer]


async def answer(store: Store, call: StatsCall) -> StatsAnswer:
    """One call answered by the store's single method (errors caught into the answer)."""
    try:
        if call.kind == "aggregate":
            return StatsAnswer(values=await store.aggregate(call.query))
        if call.kind == "timeseries":
            return StatsAnswer(points=await store.timeseries(call.query))
        return StatsAnswer(rows=await store.breakdown(call.query))
    except HitstreamError as exc:
        return StatsAnswer.failed(exc)


def check_site(site_id: str, calls: Sequence[StatsCall]) -> None:
    """``QueryError`` unless every call is about ``site_id`` (the version read is its)."""
    for call in calls:
        if call.query.site_id != site_id:
            raise QueryError("site_id", f"a batch of {site_id!r} holds a query of another site")


async def one_by_one(store: Store, site_id: str, calls: Sequence[StatsCall]) -> StatsBatch:
    """A batch through the single methods, concurrently (a pooled store runs them side by
    side), the version read first, as a caller of the single methods reads it: what a store
    without a batch job of its own does."""
    check_site(site_id, calls)
    version = await store.data_version(site_id)
    answers = await asyncio.gather(*(answer(store, call) for call in calls))
    return StatsBatch(version, list(answers))
