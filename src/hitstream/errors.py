"""The exceptions hitstream raises, so callers never catch a driver's.

    HitstreamError
    ├── ConfigError            bad settings or an unknown adapter URL scheme
    ├── AdapterUnavailable     a backing service cannot be reached right now (retry later)
    │   ├── LogUnavailable     the event log refused or failed an append or a read
    │   ├── StoreUnavailable   the store failed a transaction or a query
    │   ├── FanoutUnavailable  the fan-out backend is down (never blocks ingestion)
    │   └── DiskUnavailable    a local data folder refuses writes (full, read-only)
    ├── PositionConflict       another processor already stored past this batch (a rebalance)
    ├── QueryError             a query, filter, view or alert rule that cannot be used as
    │   │                      asked, naming the field (a 400; defined in the pure domain)
    │   └── StoreRefused       a value the store cannot hold (a NUL in a text): the same data
    │                          fails again, so a write's message is dead-lettered, a read a 400
    ├── Conflict               a site or user that exists already (a 409; domain)
    ├── AccessDenied           no credential (401) or one that does not reach (403; domain)
    ├── NotFound               a site, key or link that does not exist (a 404; domain)
    └── RateLimited            over an ingestion limit (a 429 with Retry-After; domain)

Adapters translate their driver's exceptions at the boundary:
``raise LogUnavailable("...") from exc``.
"""

from __future__ import annotations

from hitstream.domain.errors import (
    AccessDenied,
    Conflict,
    HitstreamError,
    NotFound,
    QueryError,
    RateLimited,
)

__all__ = [
    "AccessDenied",
    "AdapterUnavailable",
    "ConfigError",
    "Conflict",
    "DiskUnavailable",
    "FanoutUnavailable",
    "HitstreamError",
    "LogUnavailable",
    "NotFound",
    "PositionConflict",
    "QueryError",
    "RateLimited",
    "StoreRefused",
    "StoreUnavailable",
    "public_reason",
]


class ConfigError(HitstreamError):
    """Settings that cannot work: an unknown URL scheme, a bad value."""


class AdapterUnavailable(HitstreamError):
    """A backing service (log, store, fan-out) cannot be used right now; retry later."""

    failing_fast = False
    """Raised at once by a circuit breaker (``breaker.Breaker``): the service is known down."""


class LogUnavailable(AdapterUnavailable):
    """The event log failed an append or a read; nothing was acknowledged."""


class StoreUnavailable(AdapterUnavailable):
    """The store failed a transaction or a query; the transaction was rolled back."""


class FanoutUnavailable(AdapterUnavailable):
    """The fan-out backend is down; live updates pause, ingestion goes on."""


class DiskUnavailable(AdapterUnavailable):
    """A local folder the process writes to (embedded log or store) refuses writes."""


_PARTS: tuple[tuple[type[AdapterUnavailable], str], ...] = (
    (LogUnavailable, "the event log"),
    (StoreUnavailable, "the store"),
    (FanoutUnavailable, "the fan-out"),
    (DiskUnavailable, "a data folder"),
)


def public_reason(error: AdapterUnavailable) -> str:
    """What a 503 tells the caller: which part is down, not the adapter's own text (a
    database's host and user, a data folder's path), which the server's log keeps."""
    part = next((name for kind, name in _PARTS if isinstance(error, kind)), "a backing service")
    if error.failing_fast:
        return f"{part} is unavailable (failing fast until it answers again); retry later"
    return f"{part} is unavailable; retry later"


class StoreRefused(QueryError):
    """The store cannot hold a value it was given (a NUL character in a text, a number out of
    its range): retrying the same data fails the same way. Not an ``AdapterUnavailable``: the
    processor's runner halves the batch down to the message and dead-letters it (the others
    are stored), and a read answers 400. ``detail`` (the driver's text) is for the log."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(
            "request", f"holds a value the store cannot hold ({what}): a NUL character?"
        )
        self.detail = detail
        self.args = (f"{what}: {detail or 'refused'}",)  # the log's and a dead letter's text


class PositionConflict(HitstreamError):
    """The store holds a position past the start of the batch being written: a partition
    moved to another processor, which has stored these messages already. Nothing was
    written; the processor must drop its state and resume from the store's positions."""
