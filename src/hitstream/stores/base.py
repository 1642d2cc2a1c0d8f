"""The store port: processed events, the sessions rollup, log positions, and stats queries.

Guarantee every adapter must keep (the contract suite checks it): ``write`` applies a whole
``WriteBatch`` (events, sessions, drop counts AND log positions) in one transaction or not at
all, and never stores an ``event_id`` twice. That is what makes processing effectively-once:
after a crash the processor resumes from the positions stored with the data it wrote.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.stats import BreakdownRow, Filter, StatsQuery, TimeseriesPoint
from hitstream.errors import PositionConflict
from hitstream.stores import batch
from hitstream.stores.batch import StatsBatch, StatsCall
from hitstream.stores.registry import Registry


@dataclass(slots=True)
class WriteBatch:
    """Everything one processor batch changes, applied atomically."""

    stream: str
    positions: dict[int, int]
    events: list[ProcessedEvent] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    drops: dict[tuple[str, str], int] = field(default_factory=dict)
    """(site_id, reason) -> events dropped by the pipeline in this batch."""
    starts: dict[int, int] = field(default_factory=dict)
    """partition -> offset of this batch's first message: the fence. A stored position
    beyond it means another processor got there first (``PositionConflict``)."""


def check_fence(stream: str, stored: dict[int, int], starts: dict[int, int]) -> None:
    """Raise ``PositionConflict`` if any partition's stored position is past the batch start.

    Offsets may have gaps (Kafka control records, Redis ids), so only "past" is a conflict.
    """
    for partition, start in starts.items():
        position = stored.get(partition)
        if position is not None and position > start:
            raise PositionConflict(
                f"{stream}[{partition}] is stored up to {position}, past this batch's {start}"
            )


class Store(Registry, ABC):
    """The store port; every store is also the site registry (``stores.registry``)."""

    name: str = "store"
    migrations_applied: tuple[str, ...] = ()
    """The migrations ``start`` applied (``hitstream migrate`` names them)."""

    async def start(self) -> None:
        """Connect or open files, and run pending migrations."""

    async def close(self) -> None: ...

    @abstractmethod
    async def migrate(self) -> list[str]:
        """Apply pending schema migrations; return the names applied (idempotent)."""

    @abstractmethod
    async def check(self) -> None:
        """Raise ``StoreUnavailable`` if the store cannot answer right now."""

    @abstractmethod
    async def positions(self, stream: str) -> dict[int, int]:
        """partition -> next offset, as stored by the last committed ``write``."""

    @abstractmethod
    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored already (for idempotent client retries)."""

    @abstractmethod
    async def write(self, batch: WriteBatch) -> None:
        """Apply the batch in one transaction: insert events (skipping stored ids), upsert
        sessions, add drop counts, bump each touched site's data version, store positions.
        First, inside the transaction, ``check_fence`` against the stored positions (with a
        row lock where several processors share the store)."""

    @abstractmethod
    async def open_sessions(self, since_ms: int) -> list[Session]:
        """Sessions whose ``last_seen`` is at or after ``since_ms`` (to resume after restart)."""

    @abstractmethod
    async def visits_of(
        self, site_visitors: Sequence[tuple[str, str]], since_ms: int
    ) -> list[Session]:
        """The stored visits of these ``(site, visitor)`` whose ``last_seen`` is at or after
        ``since_ms``, by site and id: the visits late events may continue."""

    @abstractmethod
    async def newest_visit_ms(self) -> int | None:
        """The latest ``last_seen`` of any stored visit (None: none stored): how far in the
        events' own time the store got, where a processor resuming a backlog resumes."""

    @abstractmethod
    async def aggregate(self, query: StatsQuery) -> dict[str, float]: ...

    @abstractmethod
    async def timeseries(self, query: StatsQuery) -> list[TimeseriesPoint]:
        """One point per bucket of ``bucket_starts(query)``, zeros included."""

    @abstractmethod
    async def breakdown(self, query: StatsQuery) -> list[BreakdownRow]:
        """Rows by ``query.property`` value, ordered by the first metric desc then value."""

    @abstractmethod
    async def events_page(
        self, site_id: str, start_ms: int, end_ms: int, after: tuple[int, str] | None, limit: int
    ) -> list[ProcessedEvent]:
        """Up to ``limit`` stored events of the site with ``start_ms <= timestamp < end_ms``,
        in (timestamp, event_id) order (event ids by code point), after the event
        ``after = (timestamp, event_id)`` when given: pages of an export, each asked for with
        the last one's final key, so no caller holds more than a page. Props come back as
        their canonical text (``domain.measures.prop_text``), as every store keeps them."""

    @abstractmethod
    async def latest_events(
        self, site_id: str, start_ms: int, end_ms: int, limit: int
    ) -> list[ProcessedEvent]:
        """The newest ``limit`` stored events of the site with ``start_ms <= timestamp <
        end_ms``, returned oldest first ((timestamp, event_id) order, as ``events_page``):
        what a live feed shows when its first viewer arrives, before any new event."""

    @abstractmethod
    async def funnel(
        self, query: StatsQuery, steps: tuple[Filter, ...], window_ms: int | None
    ) -> list[int]:
        """Distinct visitors whose visit reached each step in order, among the events that
        match ``query`` (``hitstream.domain.funnels`` says how; ``window_ms``: the most the
        last step may come after the first, None for no limit)."""

    @abstractmethod
    async def data_version(self, site_id: str) -> int:
        """Grows with every write that touches the site: part of every cache key."""

    async def memory_usage(self) -> dict[str, int]:
        """Bytes the store's engine holds in this process, by what holds them (an embedded
        engine's buffer pool, indexes ...); empty where the engine is another process."""
        return {}

    async def allocator_usage(self) -> dict[str, int]:
        """Bytes the embedded engine's own allocator holds in this process, by state
        (allocated, active, resident); empty where the engine has none to read."""
        return {}

    async def view_groups(self) -> int:
        """Groups the store's in-memory rollup views hold (``stores/rollup_views``: a live
        dashboard's answers moved forward by every write); 0 where it keeps none."""
        return 0

    @abstractmethod
    async def sites(self) -> list[str]: ...

    @abstractmethod
    async def prop_keys(self, site_id: str) -> list[str]:
        """The custom property keys of the site's stored events that a dashboard offers, in
        the order they were first stored, at most ``rollups.PROP_KEYS_PER_SITE``: the keys
        the site rolls up (the first it sent), or, in a store that keeps no rollups, the
        first keys of its events."""

    @abstractmethod
    async def drop_counts(self, site_id: str | None = None) -> dict[str, int]:
        """reason -> events dropped by the processor, for one site or all."""

    @abstractmethod
    async def count_events(self, site_id: str | None = None) -> int: ...

    async def stats_batch(self, site_id: str, calls: list[StatsCall]) -> StatsBatch:
        """The site's data version and the answer to each call, as the single methods give
        them (errors included: ``stores.batch``); ``QueryError`` if a call names another
        site. This default asks the single methods; a store that can answer a batch in one
        job (or one round trip) does."""
        return await batch.one_by_one(self, site_id, calls)

    def count_answers(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(path)`` for every stats query answered: ``"rollup"`` or ``"raw"``
        (stores that keep no rollups never call it: every query of theirs scans)."""

    async def rebuild_rollups(self) -> int | None:
        """Recompute pre-aggregated rollups from the stored events; return the events read,
        or None for a store that keeps none (its queries scan events)."""
        return None

    async def lead(self, name: str) -> bool:
        """Whether this process holds the lead called ``name`` among all processes sharing
        the store: at most one holds it, and it passes on when the holder or its connection
        dies. An embedded store serves one process, which always leads."""
        return True

    @abstractmethod
    async def delete_before(self, cutoff_ms: int) -> int:
        """Retention: delete events and sessions older than ``cutoff_ms``; return events gone."""

    @abstractmethod
    async def delete_site_before(self, site_id: str, cutoff_ms: int) -> int:
        """Per-site retention: delete one site's events and visits older than ``cutoff_ms``
        (and what its rollups hold of them); return events gone."""

    @abstractmethod
    async def forget_user(self, site_id: str, user_id: str, at_ms: int) -> int:
        """Delete every stored event of the identified user ``user_id`` on the site, with
        the visits they made, and correct every rollup and the data version, so that stats
        are as if those events never arrived; return the events deleted. The user is
        recorded as forgotten at ``at_ms`` (``Registry.forgotten``), in the same transaction:
        the processor drops their events received before then that come again.

        A ``user_id`` gives its events a visitor of its own (``domain.visitors.user_hash``),
        and visits belong to one visitor, so the user's visits hold only the user's events:
        they go whole, and nobody else's visit changes."""


class RollupAnswers:
    """For stores that keep rollups: which path answered each stats query, ``"rollup"`` or
    ``"raw"`` (``answered``, and the hooks of ``count_answers``: the metric
    ``hitstream_store_queries_total{path}``). Call ``__init__`` from the store's own."""

    def __init__(self) -> None:
        self.answered: Counter[str] = Counter()
        """How many stats queries were answered from ``rollup``s and from ``raw`` events."""
        self._answer_hooks: list[Callable[[str], None]] = []

    def count_answers(self, hook: Callable[[str], None]) -> None:
        self._answer_hooks.append(hook)

    def _answered(self, path: str) -> None:
        self.answered[path] += 1
        for hook in self._answer_hooks:
            hook(path)
