"""Alerting: evaluate threshold rules on live data every few seconds, publish and notify.

Each round measures every (rule, site) pair over ``[now - window, now)`` through the Store
port, one aggregate query per (site, window, filters) group shared by all of its rules, and
moves each pair through the state machine of ``hitstream.domain.alerts``. A transition goes
to the fan-out channel ``alerts:<site_id>`` (the live dashboard shows it), to every notifier,
and to a bounded in-memory list of recent alerts per site (``GET /api/v1/alerts``).

Nothing stops the loop: a failed query leaves its rules as they were for that round (no
false resolution), a failed publish or notifier is logged and counted, and a notifier that
takes longer than ``notify_timeout_s`` is abandoned for that alert. State lives in memory:
after a restart a condition that still holds fires again (after ``for_s``).

Every processor runs alerting, but only the one holding the store's ``alerting`` lead
evaluates (``Store.lead``: on PostgreSQL an advisory lock on a connection of its own, released
when that process or connection dies); the others wait and take over. A new leader starts
with no state, so a condition that holds fires again on it (after ``for_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hitstream.domain.alerts import (
    ALL_SITES,
    OK,
    Alert,
    AlertRule,
    AlertState,
    Change,
    Probe,
    Status,
    Transition,
    plan,
    step,
)
from hitstream.domain.stats import Range, StatsQuery, parse_filters
from hitstream.errors import AdapterUnavailable
from hitstream.fanout.base import Fanout
from hitstream.notifiers.base import Notifier
from hitstream.services import conversions
from hitstream.stores.base import Store

log = logging.getLogger(__name__)
RECENT_PER_SITE: Final = 50
STATE_CHANNEL: Final = "alerts-state"
"""Where the leader publishes, after each round, what is pending or firing and each site's
recent transitions: a web process that does not evaluate (scale-out: the processors do)
answers the alerts API and starts its dashboards from it (``AlertBoard``)."""
SHARED_RECENT: Final = 20
"""Recent transitions per site in that message."""
_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _now_ms() -> int:
    return int(time.time() * 1000)


class AlertingMetrics:
    """Alerting's Prometheus series, on the registry it is given (the app's, in bootstrap)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.fired = Counter(
            "hitstream_alerts_fired_total",
            "Rules that started firing on a site (repeat notifications not counted), by rule",
            ["rule"],
            registry=r,
        )
        self.resolved = Counter(
            "hitstream_alerts_resolved_total",
            "Firing alerts that cleared, by rule",
            ["rule"],
            registry=r,
        )
        self.firing = Gauge(
            "hitstream_alerts_firing",
            "Sites on which each rule is firing now",
            ["rule"],
            registry=r,
        )
        self.notifier_failures = Counter(
            "hitstream_alert_notifier_failures_total",
            "Alerts a notifier failed to deliver or dropped, by notifier",
            ["notifier"],
            registry=r,
        )
        self.evaluation_errors = Counter(
            "hitstream_alert_evaluation_errors_total",
            "Failed steps of alert evaluation (sites, query, publish, share), by stage",
            ["stage"],
            registry=r,
        )
        self.leader = Gauge(
            "hitstream_alerting_leader",
            "1 while this process is the one that evaluates alert rules (one per deployment)",
            registry=r,
        )
        self.evaluation_seconds = Histogram(
            "hitstream_alert_evaluation_seconds",
            "Time to evaluate every rule once",
            buckets=_BUCKETS,
            registry=r,
        )


class _Rules:
    """What both views of the alerts answer alike: the rules that apply to a site."""

    rules: list[AlertRule]

    def rules_for(self, site_id: str | None = None) -> list[AlertRule]:
        return [rule for rule in self.rules if site_id is None or rule.applies_to(site_id)]


class Alerting(_Rules):
    def __init__(
        self,
        store: Store,
        fanout: Fanout,
        notifiers: Sequence[Notifier],
        rules: Sequence[AlertRule],
        metrics: AlertingMetrics | None = None,
        *,
        interval_s: float = 10.0,
        clock: Callable[[], int] = _now_ms,
        recent_per_site: int = RECENT_PER_SITE,
        notify_timeout_s: float = 5.0,
    ) -> None:
        """``clock`` gives epoch milliseconds; tests pass a fake one."""
        self.store = store
        self.fanout = fanout
        self.notifiers = list(notifiers)
        self.rules = list(rules)
        self.metrics = metrics if metrics is not None else AlertingMetrics(CollectorRegistry())
        self.interval_s = interval_s
        self.notify_timeout_s = notify_timeout_s
        self.rounds = 0
        self._clock = clock
        self._recent_per_site = recent_per_site
        self._states: dict[tuple[str, str], AlertState] = {}
        """(rule name, site) -> state, for pairs not OK only."""
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        self._filters = {rule.filters: parse_filters(rule.filters) for rule in self.rules}
        self._every_site = any(rule.site_id == ALL_SITES for rule in self.rules)

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate every ``interval_s`` until ``stop`` is set; then close the notifiers."""
        try:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    if await self.leading():
                        await self.evaluate_once()
                except Exception:  # a bug in one round must not end alerting for good
                    log.exception("alert evaluation failed")
                    self.metrics.evaluation_errors.labels("round").inc()
                wait = max(0.0, self.interval_s - (time.monotonic() - began))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            await self.close()

    async def leading(self) -> bool:
        """Whether this process evaluates now; a process that lost the lead forgets its state
        (the new leader has its own). One that cannot tell (its store is restarting: serve's
        processor child) skips the round and keeps its state: forgetting it fired every
        firing rule a second time and lost their resolution."""
        try:
            lead = await self.store.lead("alerting")
        except Exception as exc:
            log.warning("alerting cannot tell who leads: %s", exc)
            self.metrics.evaluation_errors.labels("lead").inc()
            self.metrics.leader.set(0)  # another process may hold it now
            # what fires is kept; what was pending starts again (unseen, the condition may
            # have cleared and come back: its for_s would count from before)
            for key, state in list(self._states.items()):
                if state.status is Status.PENDING:
                    del self._states[key]
            return False
        if not lead and self._states:
            self._states.clear()
            self.metrics.firing.clear()
        self.metrics.leader.set(1 if lead else 0)
        return lead

    async def close(self) -> None:
        for notifier in self.notifiers:
            try:
                await notifier.close()
            except Exception:
                log.exception("closing alert notifier %s failed", notifier.name)

    async def evaluate_once(self) -> list[Alert]:
        """One round over every rule and site; return the transitions it made."""
        began = time.perf_counter()
        now = self._clock()
        sites: list[str] | None = None
        if self._every_site:
            try:  # sites with events that are registered: a removed site's data may stay
                registered = {site.site_id for site in await self.store.registered_sites()}
                sites = [site for site in await self.store.sites() if site in registered]
            except Exception as exc:  # drivers may raise their own errors: count, go on
                log.warning("alerting cannot list sites: %s", exc)
                self.metrics.evaluation_errors.labels("sites").inc()
        alerts: list[Alert] = []
        if sites is not None:
            alerts += await self._let_go(set(sites), now)
        for probe, rules in plan(self.rules, sites or ()).items():
            values = await self._measure(probe, rules, now)
            if values is None:
                continue
            for rule in rules:
                alert = self._advance(rule, probe.site_id, values.get(rule.metric, 0.0), now)
                if alert is not None:
                    alerts.append(alert)
                    await self._tell(alert)
        self.rounds += 1
        self.metrics.evaluation_seconds.observe(time.perf_counter() - began)
        await self._share()
        return alerts

    async def _let_go(self, sites: set[str], now: int) -> list[Alert]:
        """Forget the ``"*"`` rules' pairs of sites no longer listed (removed from the
        registry): a firing one resolves, marked ``gone``, so nobody is left with an alert
        that fires for good (it was still active, and re-listed every round)."""
        every_site = {rule.name: rule for rule in self.rules if rule.site_id == ALL_SITES}
        alerts: list[Alert] = []
        for name, site in list(self._states):
            rule = every_site.get(name)
            if rule is None or site in sites:
                continue
            state = self._states.pop((name, site))
            if state.status is not Status.FIRING:
                continue
            self.metrics.resolved.labels(name).inc()
            self.metrics.firing.labels(name).dec()
            gone = Transition(Change.RESOLVED, state.value, now, state.since_ms, gone=True)
            alert = Alert(site, rule, gone)
            alerts.append(alert)
            await self._tell(alert)
        return alerts

    async def _share(self) -> None:
        """Publish what fires and the recent transitions (``STATE_CHANNEL``)."""
        shared = {
            "active": self.active(),
            "recent": {site: list(kept)[-SHARED_RECENT:] for site, kept in self._recent.items()},
        }
        try:
            await self.fanout.publish(STATE_CHANNEL, msgspec.json.encode(shared))
        except Exception as exc:
            log.warning("alert state not published: %s", exc)
            self.metrics.evaluation_errors.labels("share").inc()

    async def _measure(
        self, probe: Probe, rules: list[AlertRule], now: int
    ) -> dict[str, float] | None:
        query = StatsQuery(
            site_id=probe.site_id,
            range=Range(now - round(probe.window_s * 1000), now),
            metrics=tuple(sorted({rule.metric for rule in rules})),
            filters=self._filters[probe.filters],
        )
        try:
            if conversions.involved(query):  # goal filters: the site's goals, as the API
                query = replace(query, goals=tuple(await self.store.goals(probe.site_id)))
            return await self.store.aggregate(query)
        except Exception as exc:
            log.warning("alert query for %s failed: %s", probe.site_id, exc)
            self.metrics.evaluation_errors.labels("query").inc()
            return None

    def _advance(self, rule: AlertRule, site_id: str, value: float, now: int) -> Alert | None:
        key = (rule.name, site_id)
        before = self._states.get(key, OK)
        after, transition = step(rule, before, value, now)
        if after.status is Status.OK:
            self._states.pop(key, None)
        else:
            self._states[key] = after
        if transition is None:
            return None
        if transition.change is Change.RESOLVED:
            self.metrics.resolved.labels(rule.name).inc()
            self.metrics.firing.labels(rule.name).dec()
        elif not transition.repeat:
            self.metrics.fired.labels(rule.name).inc()
            self.metrics.firing.labels(rule.name).inc()
        return Alert(site_id, rule, transition)

    async def _tell(self, alert: Alert) -> None:
        message = alert.as_message()
        recent = self._recent.get(alert.site_id)
        if recent is None:
            recent = self._recent[alert.site_id] = deque(maxlen=self._recent_per_site)
        recent.append(message)
        try:
            await self.fanout.publish(f"alerts:{alert.site_id}", msgspec.json.encode(message))
        except Exception as exc:
            log.warning("alert for %s not published: %s", alert.site_id, exc)
            self.metrics.evaluation_errors.labels("publish").inc()
        for notifier in self.notifiers:
            try:
                await asyncio.wait_for(notifier.notify(alert), self.notify_timeout_s)
            except Exception as exc:  # TimeoutError included: the next notifier still runs
                log.warning("alert notifier %s failed: %r", notifier.name, exc)
                self.metrics.notifier_failures.labels(notifier.name).inc()

    # -- what the API shows --------------------------------------------------------------

    evaluated_here: Final = True

    def recent(self, site_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recent alert messages, newest first, for one site or every site."""
        return newest(self._recent, site_id, limit)

    def active(self, site_id: str | None = None) -> list[dict[str, Any]]:
        """Pairs pending or firing now, for one site or every site."""
        return [
            {
                "rule": name,
                "site_id": site,
                "state": state.status.value,
                "since": state.since_ms,
                "value": state.value,
            }
            for (name, site), state in sorted(self._states.items())
            if site_id is None or site == site_id
        ]


def newest(
    by_site: Mapping[str, Sequence[dict[str, Any]]], site_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Alert messages kept per site (oldest first), newest first: one site's or all."""
    if site_id is not None:
        return list(reversed(by_site.get(site_id, ())))[:limit]
    every = [message for kept in by_site.values() for message in kept]
    every.sort(key=lambda message: message["at"], reverse=True)
    return every[:limit]


class AlertBoard(_Rules):
    """The alerts as another process evaluates them: the last ``STATE_CHANNEL`` message.
    A web process of a scale-out deployment (the processors hold the rules' lead) answers
    ``GET /api/v1/alerts`` and starts its dashboards' alert panels from it; it said
    ``enabled: false`` with nothing listed while a rule fired."""

    evaluated_here: Final = False

    def __init__(self, fanout: Fanout, rules: Sequence[AlertRule]) -> None:
        self.fanout = fanout
        self.rules = list(rules)
        self.heard = False
        """Whether a leader's state came yet (published after every round)."""
        self._active: list[dict[str, Any]] = []
        self._recent: dict[str, list[dict[str, Any]]] = {}

    def take(self, raw: bytes) -> None:
        """One ``STATE_CHANNEL`` message (one that cannot be read is logged and skipped)."""
        try:
            shared = msgspec.json.decode(raw)
            active, recent = list(shared["active"]), dict(shared["recent"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable alert state message skipped")
            return
        self._active, self._recent, self.heard = active, recent, True

    async def follow(self, stop: asyncio.Event, retry_s: float = 1.0) -> None:
        """Take every state message until ``stop``, subscribing again when the fan-out
        goes away (its subscription ends)."""
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    subscription = await self.fanout.subscribe(STATE_CHANNEL, maxsize=4)
                except Exception as exc:
                    log.warning("alert state channel unavailable, retrying: %s", exc)
                    await asyncio.wait([stopped], timeout=retry_s)
                    continue
                try:
                    while not stop.is_set():
                        message = asyncio.ensure_future(subscription.get())
                        await asyncio.wait([message, stopped], return_when=FIRST_COMPLETED)
                        if not message.done():
                            message.cancel()
                            break
                        self.take(message.result())
                except (StopAsyncIteration, AdapterUnavailable) as exc:
                    log.warning("alert state channel lost, resubscribing: %r", exc)
                finally:
                    with contextlib.suppress(Exception):
                        await self.fanout.unsubscribe(subscription)
        finally:
            stopped.cancel()

    def recent(self, site_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return newest(self._recent, site_id, limit)

    def active(self, site_id: str | None = None) -> list[dict[str, Any]]:
        return [row for row in self._active if site_id is None or row["site_id"] == site_id]
