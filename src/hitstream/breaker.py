"""A circuit breaker: while a backing service is known to be down, callers fail at once.

Why: a request that meets a dead database otherwise waits out a connection timeout (10 s
for a pool) before its 503, and every caller pays it again, piling up while the service is
away. Here a failure that may mean "the service is gone" (``suspect``) starts ONE background
probe; if the probe cannot reach the service either, the breaker opens and ``guard`` raises
the adapter's own ``AdapterUnavailable`` at once, without touching the service. The probe
keeps trying every ``interval_s``; when it gets through, ``on_recovery`` runs (e.g. replace
a pool whose connections all died) and only then does the breaker close.

Guarantees: at most one probe runs at a time; a failure the probe does not confirm (a bad
statement, one broken connection of a live server) never opens the breaker; the breaker
never closes before a probe has reached the service and ``on_recovery`` has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from hitstream.errors import AdapterUnavailable

log = logging.getLogger(__name__)


class Breaker:
    def __init__(
        self,
        name: str,
        probe: Callable[[], Awaitable[None]],
        *,
        error: type[AdapterUnavailable] = AdapterUnavailable,
        interval_s: float = 0.5,
        on_recovery: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._probe = probe
        self._error = error
        self._interval_s = interval_s
        self._on_recovery = on_recovery
        self._clock = clock
        self._opened_at: float | None = None
        self._reason = ""
        self._task: asyncio.Task[None] | None = None
        self.trips = 0
        """How many times the breaker opened (for tests and logs)."""

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def guard(self) -> None:
        """Raise the adapter's error at once while the service is known to be down."""
        if self._opened_at is not None:
            down_s = self._clock() - self._opened_at
            error = self._error(
                f"{self.name} is unavailable (down for {down_s:.1f}s: {self._reason}); "
                "failing fast until it answers again"
            )
            error.failing_fast = True
            raise error

    def suspect(self, exc: BaseException) -> None:
        """A call failed in a way that may mean the service is gone: make sure a probe runs."""
        if self._task is None or self._task.done():
            self._reason = _short(exc)
            self._task = asyncio.create_task(self._watch(), name=f"breaker {self.name}")

    async def _watch(self) -> None:
        while True:
            try:
                await self._probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._opened_at is None:
                    self._opened_at = self._clock()
                    self.trips += 1
                    log.warning("%s is down (%s): failing fast until it is back", self.name, exc)
                self._reason = _short(exc)
                await asyncio.sleep(self._interval_s)
                continue
            if self._opened_at is None:
                return  # the failure was not the service being gone
            if self._on_recovery is not None:
                try:
                    await self._on_recovery()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("%s answers again but recovery failed: %s", self.name, exc)
                    self._reason = _short(exc)
                    await asyncio.sleep(self._interval_s)
                    continue
            down_s = self._clock() - self._opened_at
            self._opened_at = None
            log.warning("%s is back after %.1fs", self.name, down_s)
            return

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
