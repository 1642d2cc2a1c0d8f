"""Login throttling: exponential waits after failed attempts, per account and per address.

Once ``free`` attempts have failed, the next attempt waits ``first_s`` (1 s), and every
further failure doubles the wait (2 s, 4 s ... at most ``cap_s``). A success clears the
records it is given (``services.accounts``: the account's; an address's are forgotten after a
quiet while instead, ``expire``). Guessing a password online then takes years, while a
user who mistypes twice is not slowed at all. Records are bounded (least recent forgotten).
Time is passed in (seconds, monotonic); the domain has no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

MAX_RECORDS: Final = 50_000


@dataclass(slots=True)
class _Record:
    failures: int
    last: float


class Throttle:
    def __init__(self, *, free: int = 3, first_s: float = 1.0, cap_s: float = 900.0) -> None:
        self.free = free
        self.first_s = first_s
        self.cap_s = cap_s
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _delay(self, failures: int) -> float:
        over = failures - self.free
        if over < 0:
            return 0.0
        return min(self.cap_s, self.first_s * 2.0**over)

    def wait(self, keys: list[str], now: float) -> float:
        """Seconds before an attempt for these keys (account, address) is considered."""
        waits = [0.0]
        for key in keys:
            record = self._records.get(key)
            if record is not None:
                waits.append(record.last + self._delay(record.failures) - now)
        return max(0.0, *waits)

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            record = self._records.get(key)
            if record is None:
                self._records[key] = _Record(1, now)
                while len(self._records) > MAX_RECORDS:
                    self._records.popitem(last=False)
            else:
                record.failures += 1
                record.last = now
                self._records.move_to_end(key)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._records.pop(key, None)

    def expire(self, key: str, now: float, idle_s: float) -> None:
        """Forget ``key``'s failures when the last came more than ``idle_s`` ago (what a key
        that no success clears uses: an address shared by many people)."""
        record = self._records.get(key)
        if record is not None and now - record.last > idle_s:
            del self._records[key]
