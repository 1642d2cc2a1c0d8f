"""The write buffer: log messages held until the next store write is due, by size or time.

A store transaction costs tens of milliseconds however few events it holds (DuckDB: ~15 ms on
an empty store, 56-76 ms at 10 M events, benchmarks/PROFILE-2026-12.md), so writing every
poll makes a quiet site pay one per event. The processor buffers what it polls and writes
when ``max_events`` are waiting or the oldest has waited ``max_wait_s``, whichever is first,
and early when a poll finds nothing new (the traffic paused, so waiting would only delay the
live update) if the last write is at least ``max_wait_s`` old (``spaced``). The spacing keeps
steady light traffic at one write per ``max_wait_s``: its polls often find nothing for a
moment, and each early write cost a whole transaction (decision 0031); a burst after a quiet
spell is still written as soon as it ends.
Nothing buffered is acknowledged to anyone: the log keeps every message and the store's
position moves only with the write, so a crash loses nothing (the next start reads the
buffer again from the stored position; docs/decisions/0007-the-position-rule.md).

Pure: the caller passes the monotonic time (tests pass a fake clock).
"""

from __future__ import annotations

from hitstream.log.base import LogMessage


class WriteBuffer:
    def __init__(self, max_events: int, max_wait_s: float) -> None:
        """``max_wait_s`` 0: every poll is written at once (no buffering)."""
        if max_events < 1 or max_wait_s < 0:
            raise ValueError("a write buffer holds at least one event and waits >= 0 s")
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self._messages: list[LogMessage] = []
        self._since: float | None = None
        self._written: float | None = None
        """When the last write took the buffer (None: no write yet)."""

    def __len__(self) -> int:
        return len(self._messages)

    def room(self) -> int:
        """How many more messages fit before the buffer is full."""
        return max(0, self.max_events - len(self._messages))

    def add(self, messages: list[LogMessage], now: float) -> None:
        if messages and self._since is None:
            self._since = now
        self._messages.extend(messages)

    def due(self, now: float) -> bool:
        """Whether the held messages must be written now (full, or the oldest waited)."""
        if not self._messages:
            return False
        assert self._since is not None
        return len(self._messages) >= self.max_events or now - self._since >= self.max_wait_s

    def spaced(self, now: float) -> bool:
        """Whether an early write (a poll found nothing new) may happen now: the last write
        is at least ``max_wait_s`` old, or there was none."""
        return self._written is None or now - self._written >= self.max_wait_s

    def wait(self, now: float, longest: float) -> float:
        """How long a poll may wait for more: until the oldest held message is due or an early
        write is allowed (``spaced``), at most ``longest`` (an empty buffer waits
        ``longest``)."""
        if self._since is None:
            return longest
        until = self._since + self.max_wait_s
        if self._written is not None and not self.spaced(now):
            until = min(until, self._written + self.max_wait_s)  # an early write is allowed then
        return max(0.0, min(longest, until - now))

    def take(self, now: float | None = None) -> list[LogMessage]:
        """Everything held, in log order; the buffer is empty afterwards. ``now``: taken for
        a write at this time (what ``spaced`` counts from)."""
        taken, self._messages, self._since = self._messages, [], None
        if now is not None:
            self._written = now
        return taken

    def clear(self) -> None:
        """Forget what is held (the consumer goes back to the store's position)."""
        self.take()
