"""Waiting before trying again: exponential backoff with jitter, one helper for every retry.

hitstream waits for a dependency in a few places: an adapter that cannot start yet
(bootstrap), a batch the store or the log refused (the processor), a fan-out channel that
went away (the live hub), a webhook that answered 5xx. They all wait through ``Backoff``:
the delay doubles from ``first_s`` up to ``max_s``, and each one is drawn from the upper part
of its range (``jitter``), so processes that failed together (every collector and processor
after a database restart) do not retry in step and hammer the service they wait for.
``sleep`` and ``random`` are injectable, so tests run on a fake clock with no real waiting.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

_MAX_EXPONENT = 64
"""Beyond this the delay is ``max_s`` anyway; the cap keeps ``factor ** attempt`` finite."""


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float = 0.2
    max_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5
    """Each delay is drawn uniformly from ``[(1 - jitter) * d, d]``; 0 makes it exact."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0: the first retry)."""
        exponent = min(max(attempt, 0), _MAX_EXPONENT)
        ceiling = min(self.max_s, self.first_s * self.factor**exponent)
        return ceiling * (1.0 - self.jitter * self.random())

    async def wait(self, attempt: int) -> float:
        """Sleep before retry number ``attempt``; return how long."""
        seconds = self.delay(attempt)
        await self.sleep(seconds)
        return seconds
