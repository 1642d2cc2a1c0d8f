"""Refusal counts kept in the store: they survive restarts of an embedded deployment.

Used when the counts are not shared through Redis (one process, ``serve``): the collector's
counts are flushed into the store's ``refusals`` table every half second by the quality pump,
and the data-quality panel reads them back from there, so a restart loses none. The store is
given as a protocol (what it needs of the registry), not imported: tally adapters do not
depend on the store port.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from hitstream.tally.base import Counts, Tally


class RefusalBook(Protocol):
    """The two registry operations this tally needs (every store has them)."""

    async def add_refusals(self, counts: Mapping[tuple[str, str], int]) -> None: ...

    async def refusals(self, site_id: str | None = None) -> dict[str, int]: ...


class StoreTally(Tally):
    name = "store"

    def __init__(self, book: RefusalBook) -> None:
        self.book = book

    async def add(self, counts: Counts) -> bool:
        try:
            await self.book.add_refusals(counts)
        except Exception:  # best effort, like every tally: the caller keeps the counts
            return False
        return True

    async def read(self, site_id: str | None) -> dict[str, int]:
        try:
            return await self.book.refusals(site_id)
        except Exception:
            return {}
