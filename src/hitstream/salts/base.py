"""The salts port: today's and yesterday's random visitor salts, rotated at UTC midnight.

Guarantee every adapter keeps (``tests/contract/test_salts_contract.py``): within one UTC day
``salts`` gives the same salts (the shared Redis keeper excepted: a collector that drew a
local salt while Redis was away takes the shared one once Redis answers); on a new day the
old current salt becomes ``previous`` (so a visit can cross midnight) and nothing older is
kept anywhere, after which no stored visitor hash can be tied to an IP again. A keeper never
stops ingestion: if its backing service is down it makes a salt locally (and says so in the
log).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hitstream.domain.visitors import Salts


class SaltKeeper(ABC):
    name: str = "salts"

    @abstractmethod
    async def salts(self, now_ms: int) -> Salts:
        """Today's and yesterday's salts at ``now_ms``, making a new day's on first use."""

    async def close(self) -> None:
        """Release connections (nothing to do for most keepers)."""
