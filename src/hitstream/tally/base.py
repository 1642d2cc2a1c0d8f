"""The tally port: named counts that several processes add to and any process reads.

Collectors count the events and requests they refuse, by site and reason; the data-quality
panel of any web process shows them. A tally is best effort, like the cache: ``add`` returns
False when it could not count (the caller keeps the counts and tries again later), ``read``
returns what it can (nothing when it is down). Ingestion never waits for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

Counts = Mapping[tuple[str, str], int]
"""(site_id, reason) -> count; site ``""`` is a refusal no site could be read from."""


class Tally(ABC):
    name: str = "tally"

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @abstractmethod
    async def add(self, counts: Counts) -> bool:
        """Add ``counts``; False if nothing was counted (try again later)."""

    @abstractmethod
    async def read(self, site_id: str | None) -> dict[str, int]:
        """reason -> count for one site, or for every site with the site-less ones (a
        refusal no site could be read from is another sender's: only admins see it)."""
