"""Live dashboards: a snapshot on connect, then sampled events and throttled, shared updates.

Clients looking at the same view (site, period, filters, time zone) share one ``View``: one
query run per tick and one encoded ``update`` frame for all of them. A view updates at most
once per ``min_update_interval_s``, and only after its site's data changed: nothing while idle.
A view whose queries are slow updates less often, so that it keeps the store busy at most
``max_busy_share`` of the time; its frames say how often (``update_interval_s``).
Updates use the same stats service as the HTTP API, so their numbers are exactly the API's for
the same data version. The fan-out reader does in-memory work only (queue pushes, flags), so
no dashboard, however slow, can hold up the processor or another dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from prometheus_client import CollectorRegistry

from hitstream.backoff import Backoff
from hitstream.domain import rollups
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.stats import parse_filters
from hitstream.errors import AdapterUnavailable, HitstreamError, QueryError
from hitstream.fanout.base import Fanout
from hitstream.services.json_body import BodyProblem
from hitstream.services.json_body import decode as decode_json
from hitstream.services.live_client import (
    Frame,
    LiveClient,
    LiveMetrics,
    TokenBucket,
    event_matches,
    sample,
)
from hitstream.services.live_views import (
    BatchStats,
    LiveStats,
    QualitySource,
    SiteFeed,
    VersionSource,
    View,
    ViewKey,
    live_event,
    parse_view,
    query_view,
)

__all__ = ["LiveConfig", "LiveHub", "LiveStats", "QualitySource", "VersionSource", "parse_view"]

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE: Final = 4096
_MAX_PROP_KEYS: Final = 200


@dataclass(frozen=True, slots=True)
class LiveConfig:
    min_update_interval_s: float = 1.0
    max_busy_share: float = 0.1
    """The most of the store's time one view's updates may take: a view whose queries take
    ``c`` seconds updates at most every ``c * (1 / share - 1)`` seconds (and never more often
    than ``min_update_interval_s``). A dashboard answered from rollups (milliseconds) updates
    every second; one that scans raw events (a filtered breakdown on a big site: seconds)
    updates less often instead of keeping the store busy (decision 0029)."""
    max_events_per_second: float = 20.0
    client_queue: int = 64
    subscription_queue: int = 1024
    recent_events: int = 50
    backfill_ms: int = 86_400_000
    """How far back a new feed looks for stored events to list (and as far ahead, for
    clocks that run fast)."""
    filtered_search: int = 2_000
    """How many of the site's newest stored events (of the last ``backfill_ms``) a filtered
    view's snapshot searches for its own newest ``recent_events`` when the site's shared list
    holds fewer matches (a filter on a page the last 50 events did not visit)."""
    recent_alerts: int = 20
    breakdown_limit: int = 10
    prop_breakdowns: int = 3
    resubscribe: Backoff = field(default_factory=lambda: Backoff(first_s=1.0, max_s=10.0))
    """How long to wait before following a channel again after the fan-out went away."""
    feed_linger_s: float = 300.0
    """How long a site's channels stay followed after its last dashboard left."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _encode(value: object) -> str:
    return msgspec.json.encode(value).decode()


def _error(field_name: str, reason: str) -> Frame:
    return Frame("error", _encode({"type": "error", "field": field_name, "reason": reason}))


class LiveHub:
    """All live connections of one web process."""

    def __init__(
        self,
        stats: LiveStats,
        store: VersionSource,
        fanout: Fanout,
        *,
        quality: QualitySource,
        config: LiveConfig | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _now_ms,
        query_ms: Callable[[], int] | None = None,
        alert_history: Callable[[str, int], list[dict[str, Any]]] | None = None,
    ) -> None:
        """``wall_ms`` times latency; ``query_ms`` is "now" for periods (pass the stats
        service's ``now_ms`` so live queries share the HTTP API's cache entries);
        ``alert_history(site, n)``: the site's newest alert messages, newest first, of the
        rules this process evaluates or of the processors' last round (``AlertBoard``): a
        feed starts with them, so a dashboard opened during an incident shows it."""
        self.stats = stats
        self.store = store
        self.fanout = fanout
        self.config = config or LiveConfig()
        self.metrics = LiveMetrics(registry)
        self._quality = quality
        self._clock = clock
        self._wall_ms = wall_ms
        self._query_ms = query_ms or wall_ms
        self._alert_history = alert_history
        self._feeds: dict[str, SiteFeed] = {}
        self._clients: set[LiveClient] = set()

    # -- connections ---------------------------------------------------------------------

    async def connect(self, params: Mapping[str, object]) -> LiveClient:
        """A new client with its snapshot queued; ``QueryError`` if the view is invalid."""
        key = parse_view(params, self._wall_ms())
        rate = self.config.max_events_per_second
        client = LiveClient(
            view=key,
            bucket=TokenBucket(rate, rate, self._clock()),
            metrics=self.metrics,
            wall_ms=self._wall_ms,
            maxsize=self.config.client_queue,
        )
        self._clients.add(client)
        self.metrics.clients.inc()
        await self._attach(client, key)
        return client

    async def receive(
        self,
        client: LiveClient,
        text: str,
        may_view: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        """Handle one message from the dashboard: ``{"type": "set", "period": ...}``.
        ``may_view(site_id)`` says why the client may not switch to another site (None: it
        may)."""
        if len(text) > MAX_CLIENT_MESSAGE:
            client.push(_error("message", f"is longer than {MAX_CLIENT_MESSAGE} characters"))
            return
        try:
            message = decode_json(text.encode())  # bounded: 2,000 "[" must not recurse
        except BodyProblem as exc:
            client.push(_error("message", exc.reason))
            return
        if not isinstance(message, dict) or message.get("type") != "set":
            client.push(_error("type", "must be 'set'"))
            return
        current = client.view.as_dict() if isinstance(client.view, ViewKey) else {}
        merged = {**current, **{k: v for k, v in message.items() if k != "type"}}
        try:
            key = parse_view(merged, self._wall_ms())
        except QueryError as exc:
            client.push(_error(exc.field, exc.reason))
            return
        if may_view is not None and key.site_id != current.get("site_id"):
            refused = await may_view(key.site_id)
            if refused is not None:
                client.push(_error("site_id", refused))
                return
        self._detach(client)
        await self._attach(client, key)

    async def disconnect(self, client: LiveClient) -> None:
        if client in self._clients:
            self._clients.discard(client)
            self.metrics.clients.dec()
        client.close()
        self._detach(client)

    async def close(self) -> None:
        for client in tuple(self._clients):
            await self.disconnect(client)
        for feed in tuple(self._feeds.values()):
            await self._drop_feed(feed)

    def summary(self) -> dict[str, Any]:
        """The body of ``GET /api/v1/live/stats``."""
        views = [view for feed in self._feeds.values() for view in feed.views.values()]
        return {
            "clients": len(self._clients),
            "sites": sum(1 for feed in self._feeds.values() if feed.views),
            "views": len(views),
            "updates": sum(view.updates for view in views),
            "longest_update_interval_s": round(
                max((self._interval(view) for view in views), default=0.0), 1
            ),
            "frames_dropped": sum(client.dropped for client in self._clients),
            "events_skipped": sum(client.skipped for client in self._clients),
            "latency_seconds": self.metrics.percentiles(),
        }

    # -- views and feeds -----------------------------------------------------------------

    async def _attach(self, client: LiveClient, key: ViewKey) -> None:
        client.reset(key)
        feed = self._feeds.get(key.site_id)
        if feed is not None and feed.expiry is not None:
            feed.expiry.cancel()
            feed.expiry = None
        if feed is None:
            feed = SiteFeed(
                key.site_id,
                recent=deque(maxlen=self.config.recent_events),
                alerts=deque(maxlen=self.config.recent_alerts),
            )
            if self._alert_history is not None:
                history = self._alert_history(key.site_id, self.config.recent_alerts)
                feed.alerts.extend(reversed(history))
            self._feeds[key.site_id] = feed
            feed.tasks = [
                asyncio.create_task(self._read(feed, f"site:{key.site_id}")),
                asyncio.create_task(self._read(feed, f"alerts:{key.site_id}")),
            ]
            feed.filled = asyncio.create_task(self._fill(feed))
            feed.tasks.append(feed.filled)  # cancelled with the readers
        view = feed.views.get(key)
        if view is None:
            view = View(key, parse_filters(key.filters))
            feed.views[key] = view
            view.task = asyncio.create_task(self._update_loop(feed, view))
        view.clients.add(client)
        if feed.filled is not None and not feed.filled.done():
            await asyncio.wait([feed.filled])  # not cancelled with this client
        await self._snapshot(client, feed, view)

    async def _fill(self, feed: SiteFeed) -> None:
        """Put the site's newest stored events (of the last ``backfill_ms``) before what
        the feed received meanwhile; a store that fails leaves the feed as it was."""
        now_ms = self._wall_ms()
        stored = await self._newest_stored(
            feed.site_id, now_ms, self.config.recent_events, "live feed starts without them"
        )
        if stored is None:
            return
        received = {e.get("event_id") for e in feed.recent}
        older = [live_event(e) for e in stored if e.event_id not in received]
        room = self.config.recent_events - len(feed.recent)
        if room > 0:
            feed.recent.extendleft(reversed(older[max(len(older) - room, 0) :]))
        try:  # the props tab offers the keys stored before anyone watched, after live ones
            keys = await self.store.prop_keys(feed.site_id)
        except HitstreamError as exc:
            log.warning(
                "live feed of %s starts without its stored prop keys: %s", feed.site_id, exc
            )
            return
        for key in keys:
            if key in feed.prop_keys or len(feed.prop_keys) < _MAX_PROP_KEYS:
                feed.prop_keys[key] += 0

    def _detach(self, client: LiveClient) -> None:
        key = client.view
        if not isinstance(key, ViewKey) or (feed := self._feeds.get(key.site_id)) is None:
            return
        view = feed.views.get(key)
        if view is not None:
            view.clients.discard(client)
            if not view.clients:
                if view.task is not None:
                    view.task.cancel()
                del feed.views[key]
        if not feed.views and feed.expiry is None:
            loop = asyncio.get_running_loop()
            feed.expiry = loop.call_later(self.config.feed_linger_s, self._expire, feed)

    def _expire(self, feed: SiteFeed) -> None:
        feed.expiry = None
        if feed.views or self._feeds.get(feed.site_id) is not feed:
            return
        del self._feeds[feed.site_id]
        for task in feed.tasks:
            task.cancel()

    async def _drop_feed(self, feed: SiteFeed) -> None:
        self._feeds.pop(feed.site_id, None)
        if feed.expiry is not None:
            feed.expiry.cancel()
        tasks = feed.tasks + [v.task for v in feed.views.values() if v.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, feed: SiteFeed, channel: str) -> None:
        """Follow one fan-out channel for as long as the site has viewers, subscribing again
        (with backoff) whenever the fan-out goes away."""
        attempt = 0
        while True:
            try:
                subscription = await self.fanout.subscribe(
                    channel, maxsize=self.config.subscription_queue
                )
            except AdapterUnavailable as exc:
                log.warning("live channel %s unavailable, retrying: %s", channel, exc)
                await self.config.resubscribe.wait(attempt)
                attempt += 1
                continue
            attempt = 0
            try:
                async for raw in subscription:
                    self._dispatch(feed, raw)
            except AdapterUnavailable as exc:
                log.warning("live channel %s lost, resubscribing: %s", channel, exc)
            finally:
                await asyncio.shield(self.fanout.unsubscribe(subscription))
            await self.config.resubscribe.wait(attempt)

    def _dispatch(self, feed: SiteFeed, raw: bytes) -> None:
        try:
            message = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            log.warning("undecodable live message on %s dropped", feed.site_id)
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "processed":
            self._on_processed(feed, message)
        elif message.get("type") == "alert":
            if message in feed.alerts:  # the feed started with it (``alert_history``)
                return
            feed.alerts.append(message)
            frame = Frame("alert", raw.decode())
            for view in feed.views.values():
                for client in view.clients:
                    client.push(frame)

    def _on_processed(self, feed: SiteFeed, message: dict[str, Any]) -> None:
        version = message.get("data_version")
        if isinstance(version, int):
            feed.version = max(feed.version, version)
        raw_events = message.get("events")
        events = (
            [e for e in raw_events if isinstance(e, dict)] if isinstance(raw_events, list) else []
        )
        total = message.get("events_total")
        truncated = isinstance(total, int) and total > len(events)
        for event in events:
            props = event.get("props")
            if isinstance(props, dict):
                for prop in props:
                    if prop in feed.prop_keys or len(feed.prop_keys) < _MAX_PROP_KEYS:
                        feed.prop_keys[prop] += 1
        feed.recent.extend(events)
        encoded = [_encode(event) for event in events]
        now_ms, now = self._wall_ms(), self._clock()
        for view in feed.views.values():
            in_range = [
                i for i, e in enumerate(events) if view.contains(_int(e.get("timestamp")), now_ms)
            ]
            if in_range or truncated or message.get("dropped"):
                view.changed.set()
            mine = [i for i in in_range if event_matches(events[i], view.filters, view.goals)]
            if mine:
                self._send_events(view, mine, events, encoded, now)

    def _send_events(
        self,
        view: View,
        mine: list[int],
        events: list[dict[str, Any]],
        encoded: list[str],
        now: float,
    ) -> None:
        for client in view.clients:
            if not client.ready:
                continue
            chosen: list[int] = sample(mine, client.bucket.take(len(mine), now))
            skipped = len(mine) - len(chosen)
            client.skipped += skipped
            client.pending_skipped += skipped
            if skipped:
                self.metrics.events_skipped.inc(skipped)
            if not chosen:
                continue
            text = (
                f'{{"type":"event","skipped":{client.pending_skipped},'
                f'"events":[{",".join(encoded[i] for i in chosen)}]}}'
            )
            client.pending_skipped = 0
            received = tuple(_int(events[i].get("received_at")) for i in chosen)
            client.push(Frame("event", text, view.key, tuple(r for r in received if r > 0)))

    # -- queries -------------------------------------------------------------------------

    async def _snapshot(self, client: LiveClient, feed: SiteFeed, view: View) -> None:
        async with view.lock:
            fresh = (
                view.state is not None
                and view.state_version >= feed.version
                and self._clock() - view.state_at < self._interval(view)
            )
            try:
                state = (
                    view.state
                    if fresh and view.state is not None
                    else await self._compute(feed, view)
                )
            except HitstreamError as exc:
                log.warning("live snapshot for %s failed: %s", view.key.site_id, exc)
                if isinstance(exc, QueryError):  # named as the API names it, not "snapshot: ..."
                    client.push(_error(exc.field, exc.reason))
                else:
                    client.push(_error("snapshot", str(exc)))
                client.ready = True
                return
            if client.view != view.key:
                return
            now_ms = self._wall_ms()
            recent = [
                e
                for e in feed.recent
                if view.contains(_int(e.get("timestamp")), now_ms)
                and event_matches(e, view.filters, view.goals)
            ]
            if view.filters and len(recent) < self.config.recent_events:
                recent = await self._more_matches(feed, view, recent, now_ms)
            body = {
                "type": "snapshot",
                "view": view.key.as_dict(),
                **state,
                "events": recent,
                "alerts": list(feed.alerts),
            }
            client.push(Frame("snapshot", _encode(body), view.key))
            client.ready = True

    async def _newest_stored(
        self, site_id: str, now_ms: int, limit: int, otherwise: str
    ) -> list[ProcessedEvent] | None:
        """The site's newest ``limit`` stored events within ``backfill_ms`` of now; None
        when the store fails (logged, with what ``otherwise`` happens)."""
        try:
            return await self.store.latest_events(
                site_id, now_ms - self.config.backfill_ms, now_ms + self.config.backfill_ms, limit
            )
        except HitstreamError as exc:
            log.warning("stored events of %s unread (%s): %s", site_id, otherwise, exc)
            return None

    async def _more_matches(
        self, feed: SiteFeed, view: View, found: list[dict[str, Any]], now_ms: int
    ) -> list[dict[str, Any]]:
        """A filtered view's newest ``recent_events`` matches: ``found`` (from the shared
        list) and those among the site's newest ``filtered_search`` stored events; a store
        that fails leaves ``found``."""
        stored = await self._newest_stored(
            feed.site_id, now_ms, self.config.filtered_search, "a filtered view lists fewer"
        )
        if stored is None:
            return found
        have = {e.get("event_id") for e in found}
        more = [
            e
            for e in map(live_event, stored)
            if e.get("event_id") not in have
            and view.contains(_int(e.get("timestamp")), now_ms)
            and event_matches(e, view.filters, view.goals)
        ]
        merged = sorted(
            [*more, *found], key=lambda e: (_int(e.get("timestamp")), str(e.get("event_id")))
        )
        return merged[-self.config.recent_events :]

    def _interval(self, view: View) -> float:
        return update_interval(
            self.config.min_update_interval_s, view.cost_s, self.config.max_busy_share
        )

    async def _update_loop(self, feed: SiteFeed, view: View) -> None:
        while True:
            await view.changed.wait()
            delay = view.last_update + self._interval(view) - self._clock()
            if delay > 0:
                await asyncio.sleep(delay)
            view.changed.clear()
            try:
                async with view.lock:
                    state = await self._compute(feed, view)
                    frame = Frame("update", _encode({"type": "update", **state}), view.key)
                    for client in tuple(view.clients):
                        client.push(frame)
            except HitstreamError as exc:
                log.warning("live update for %s failed: %s", view.key.site_id, exc)
            view.last_update = self._clock()
            view.updates += 1

    async def _compute(self, feed: SiteFeed, view: View) -> dict[str, Any]:
        """Run the view's queries once and remember the result for snapshots (with the
        data version they were computed at, when the batch says it; else the one read
        before them)."""
        began = self._clock()
        version = -1
        if not isinstance(self.stats, BatchStats):
            version = await self.store.data_version(view.key.site_id)
        top_props = feed.prop_keys.most_common(self.config.prop_breakdowns)
        if view.names_goals:  # the live list checks them (goals change while it is open)
            view.goals = tuple(await self.store.goals(view.key.site_id))
        answered, state = await query_view(
            self.stats,
            view.key,
            now_ms=self._query_ms(),
            quality=self._quality,
            prop_keys=[prop for prop, _ in top_props],
            limit=self.config.breakdown_limit,
        )
        if answered is not None:
            version = answered
        done = self._clock()
        view.cost_s = done - began
        state = {
            "data_version": version,
            "update_interval_s": round(self._interval(view), 1),
            **state,
            # every key the feed knows (the props tab names those it does not break down)
            "prop_keys": [
                prop for prop, _ in feed.prop_keys.most_common(rollups.PROP_KEYS_PER_SITE)
            ],
        }
        view.state, view.state_at, view.state_version = state, done, version
        return state


def update_interval(min_s: float, cost_s: float, share: float) -> float:
    """Seconds between a view's updates when computing one takes ``cost_s``: its queries
    then hold the store at most ``share`` of the time (``LiveConfig.max_busy_share``)."""
    if share >= 1.0:
        return min_s
    return max(min_s, cost_s * (1.0 / share - 1.0))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
