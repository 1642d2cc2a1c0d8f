"""Token buckets for ingestion: per client IP and per site, events per second.

A bucket holds at most ``burst`` tokens and gains ``rate`` a second; an event costs one.
``Buckets`` keeps one bucket per key (an IP, a site) with a bounded number of keys: a bucket
that has refilled to full is the same as a new one, so the least recently used keys can be
forgotten without giving anyone more than they would get anyway (a full bucket is what a
new key starts with). A request's events are taken all or nothing from every bucket it
touches, so a refused request costs no tokens. Time is passed in (seconds, monotonic).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MAX_KEYS: Final = 100_000


@dataclass(slots=True)
class Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, count: int) -> float:
        """Seconds until ``count`` tokens are there (0: they are); inf if never (> burst)."""
        if count <= self.tokens:
            return 0.0
        if count > self.burst or self.rate <= 0:
            return math.inf
        return (count - self.tokens) / self.rate


class Buckets:
    """One bucket per key; ``rate`` <= 0 means no limit."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0) if rate > 0 else 0.0
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _bucket(self, key: str, now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = Bucket(self.rate, self.burst, self.burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.refill(now)
        return bucket

    def wait_for(self, wanted: Mapping[str, int], now: float) -> float:
        """Seconds until every key has its count (0: now); takes nothing."""
        if not self.enabled:
            return 0.0
        return max((self._bucket(k, now).wait_for(n) for k, n in wanted.items()), default=0.0)

    def take(self, wanted: Mapping[str, int], now: float) -> None:
        """Take the counts (after ``wait_for`` said 0)."""
        if self.enabled:
            for k, n in wanted.items():
                self._bucket(k, now).tokens -= n

    def __len__(self) -> int:
        return len(self._buckets)


def take_all(limits: list[tuple[Buckets, Mapping[str, int]]], now: float) -> float:
    """Take from every (buckets, counts) pair, or from none: the seconds to wait before the
    request could pass (0 when it passed and the tokens were taken). A request larger than a
    burst can never pass: it waits ``inf`` (the caller says so)."""
    wait = max((b.wait_for(w, now) for b, w in limits), default=0.0)
    if wait > 0:
        return wait
    for buckets, wanted in limits:
        buckets.take(wanted, now)
    return 0.0


def retry_after(wait_s: float) -> int:
    """Whole seconds for a ``Retry-After`` header: at least 1."""
    if math.isinf(wait_s):
        return 60
    return max(1, math.ceil(wait_s))
