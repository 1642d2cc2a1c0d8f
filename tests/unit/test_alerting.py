"""Alerting over the memory store and fan-out: rules fire on written events, frames go out on
``alerts:<site>``, notifiers get them (the webhook over ``httpx.MockTransport``), and no
failing query or notifier stops the loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from hitstream.backoff import Backoff
from hitstream.bootstrap import make_alerting, make_notifiers
from hitstream.domain.alerts import Alert, Change, Transition, rule_from
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.goals import Goal
from hitstream.domain.stats import StatsQuery
from hitstream.errors import ConfigError
from hitstream.fanout.base import Subscription
from hitstream.fanout.memory import MemoryFanout
from hitstream.metrics import Metrics
from hitstream.notifiers.base import Notifier
from hitstream.notifiers.log import LogNotifier
from hitstream.notifiers.memory import MemoryNotifier
from hitstream.notifiers.webhook import WebhookNotifier
from hitstream.services.access import Gatekeeper
from hitstream.services.alerting import STATE_CHANNEL, AlertBoard, Alerting, AlertingMetrics
from hitstream.stores.base import WriteBatch
from hitstream.stores.memory import MemoryStore
from hitstream.web import alerts as alerts_api
from hitstream.web.deps import AppServices
from tests.access import admin_key, bearer, register

T0 = 1_790_000_000_000
SPIKE = {"name": "spike", "metric": "pageviews", "window_s": 300, "op": ">=", "threshold": 3}


def event(
    n: int, site: str = "a.io", ts: int = T0, path: str = "/", kind: str = "pageview"
) -> ProcessedEvent:
    return ProcessedEvent(
        event_id=f"e-{site}-{n}",
        site_id=site,
        type=kind,
        name="",
        timestamp=ts,
        received_at=ts,
        visitor_id=f"v{n}",
        session_id=f"s{n}",
        user_id="",
        hostname=site,
        path=path,
        url=f"https://{site}{path}",
        title="",
        referrer="",
        referrer_domain="",
        source="",
        channel="Direct",
        utm_source="",
        utm_medium="",
        utm_campaign="",
        utm_term="",
        utm_content="",
        browser="Chrome",
        browser_version="130",
        os="Windows",
        os_version="10",
        device="desktop",
        country="DE",
        screen_width=None,
        duration_ms=None,
        load_time_ms=None,
        props={},
    )


async def write(store: MemoryStore, *events: ProcessedEvent) -> None:
    """The events, their sites registered first (``"*"`` rules watch registered sites)."""
    await register(store, *sorted({e.site_id for e in events if e.site_id}))
    await store.write(WriteBatch(stream="test", positions={}, events=list(events)))


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 1000

    def __call__(self) -> int:
        return self.now


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.queries: list[StatsQuery] = []

    async def aggregate(self, query: StatsQuery) -> dict[str, float]:
        self.queries.append(query)
        return await super().aggregate(query)


class Broken(Notifier):
    name = "broken"

    async def notify(self, alert: Alert) -> None:
        raise RuntimeError("smtp on fire")


class Stuck(Notifier):
    name = "stuck"

    async def notify(self, alert: Alert) -> None:
        await asyncio.Event().wait()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
async def fanout() -> AsyncIterator[MemoryFanout]:
    fanout = MemoryFanout()
    yield fanout
    await fanout.close()


def make(
    store: MemoryStore,
    fanout: MemoryFanout,
    rules: list[dict[str, Any]],
    notifiers: list[Notifier] | None = None,
    clock: Clock | None = None,
    **kw: Any,
) -> Alerting:
    metrics = AlertingMetrics(CollectorRegistry())
    return Alerting(
        store,
        fanout,
        notifiers if notifiers is not None else [MemoryNotifier()],
        [rule_from(rule) for rule in rules],
        metrics,
        clock=clock or Clock(),
        **kw,
    )


def frames(subscription: Subscription) -> list[dict[str, Any]]:
    items = []
    while subscription._items:
        items.append(json.loads(subscription._items.popleft()))
    return items


def sample(alerting: Alerting, name: str, labels: dict[str, str] | None = None) -> float:
    value = alerting.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)


# -- evaluation -------------------------------------------------------------------------------


async def test_written_events_fire_a_rule_and_publish_an_alert_frame(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    memory = MemoryNotifier()
    clock = Clock()
    alerting = make(store, fanout, [SPIKE], [memory], clock)
    channel = await fanout.subscribe("alerts:a.io")
    await write(store, event(1), event(2))
    assert await alerting.evaluate_once() == []
    await write(store, event(3))
    clock.now += 10_000
    [alert] = await alerting.evaluate_once()
    assert (alert.site_id, alert.rule.name, alert.transition.change) == (
        "a.io",
        "spike",
        Change.FIRING,
    )
    [frame] = frames(channel)
    assert frame["type"] == "alert" and frame["state"] == "firing"
    assert (frame["site_id"], frame["rule"], frame["value"], frame["threshold"]) == (
        "a.io",
        "spike",
        3.0,
        3.0,
    )
    assert frame["at"] == clock.now and frame["severity"] == "warning"
    assert memory.alerts == [alert]
    assert alerting.recent("a.io") == [frame]
    assert alerting.active("a.io") == [
        {"rule": "spike", "site_id": "a.io", "state": "firing", "since": clock.now, "value": 3.0}
    ]
    assert sample(alerting, "hitstream_alerts_fired_total", {"rule": "spike"}) == 1
    assert sample(alerting, "hitstream_alerts_firing", {"rule": "spike"}) == 1
    # still firing: nothing new
    clock.now += 10_000
    assert await alerting.evaluate_once() == []
    assert frames(channel) == []


async def test_the_alert_resolves_when_the_window_slides_past_the_events(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    clock = Clock()
    alerting = make(store, fanout, [SPIKE], clock=clock)
    channel = await fanout.subscribe("alerts:a.io")
    await write(store, event(1), event(2), event(3))
    await alerting.evaluate_once()
    clock.now = T0 + 300_001  # [now - 300 s, now) starts just after the events
    [alert] = await alerting.evaluate_once()
    assert alert.transition.change is Change.RESOLVED and alert.transition.value == 0
    assert [f["state"] for f in frames(channel)] == ["firing", "resolved"]
    assert [m["state"] for m in alerting.recent("a.io")] == ["resolved", "firing"]
    assert alerting.active() == []
    assert sample(alerting, "hitstream_alerts_resolved_total", {"rule": "spike"}) == 1
    assert sample(alerting, "hitstream_alerts_firing", {"rule": "spike"}) == 0


async def test_one_query_per_site_window_and_filters(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    rules = [
        SPIKE,
        {**SPIKE, "name": "visitors", "metric": "visitors"},
        {**SPIKE, "name": "bounces", "metric": "bounce_rate", "op": ">", "threshold": 90},
        {**SPIKE, "name": "checkout", "filters": "page==/checkout", "threshold": 2},
    ]
    clock = Clock()
    alerting = make(store, fanout, rules, clock=clock)
    await write(store, event(1), event(2, path="/checkout"), event(3, "b.io", path="/checkout"))
    await alerting.evaluate_once()
    seen = sorted((q.site_id, q.metrics, q.filters != ()) for q in store.queries)
    assert seen == [
        ("a.io", ("bounce_rate", "pageviews", "visitors"), False),
        ("a.io", ("pageviews",), True),
        ("b.io", ("bounce_rate", "pageviews", "visitors"), False),
        ("b.io", ("pageviews",), True),
    ]
    assert {(q.range.start, q.range.end) for q in store.queries} == {
        (clock.now - 300_000, clock.now)
    }


async def test_filters_narrow_what_a_rule_measures(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    rule = {**SPIKE, "name": "checkout", "filters": "page==/checkout", "threshold": 2}
    alerting = make(store, fanout, [rule])
    await write(store, event(1), event(2), event(3, path="/checkout"))
    assert await alerting.evaluate_once() == []
    await write(store, event(4, path="/checkout"))
    [alert] = await alerting.evaluate_once()
    assert alert.transition.value == 2


async def test_a_site_without_traffic_fires_a_less_than_rule(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    rules = [
        {"name": "tracker-down", "metric": "pageviews", "window_s": 900, "op": "<", "threshold": 1},
        {**SPIKE, "name": "new-site-down", "site_id": "new.io", "op": "<", "threshold": 1},
    ]
    clock = Clock()
    alerting = make(store, fanout, rules, clock=clock)
    await write(store, event(1, "old.io", ts=T0 - 3_600_000), event(2, "live.io", ts=T0))
    fired = await alerting.evaluate_once()
    assert sorted((a.rule.name, a.site_id) for a in fired) == [
        ("new-site-down", "new.io"),
        ("tracker-down", "old.io"),
    ]
    assert all(a.transition.value == 0 for a in fired)


async def test_sites_with_empty_ids_are_not_evaluated(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    alerting = make(store, fanout, [{**SPIKE, "op": "<", "threshold": 1}])
    await store.write(WriteBatch(stream="test", positions={}, drops={("", "undecodable"): 1}))
    assert "" in await store.sites()
    assert await alerting.evaluate_once() == []
    assert store.queries == []


async def test_for_s_holds_back_the_first_notification(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    clock = Clock()
    memory = MemoryNotifier()
    alerting = make(store, fanout, [{**SPIKE, "for_s": 30, "repeat_s": 60}], [memory], clock)
    await write(store, event(1), event(2), event(3))
    for _ in range(3):
        await alerting.evaluate_once()
        clock.now += 10_000
    assert memory.alerts == []
    assert alerting.active("a.io")[0]["state"] == "pending"
    await alerting.evaluate_once()  # 30 s after the condition began
    assert [a.transition.repeat for a in memory.alerts] == [False]
    for _ in range(6):
        clock.now += 10_000
        await alerting.evaluate_once()
    assert [a.transition.repeat for a in memory.alerts] == [False, True]
    assert sample(alerting, "hitstream_alerts_fired_total", {"rule": "spike"}) == 1


# -- failures ---------------------------------------------------------------------------------


async def test_a_failing_or_stuck_notifier_does_not_stop_the_others(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    memory = MemoryNotifier()
    alerting = make(store, fanout, [SPIKE], [Broken(), Stuck(), memory], notify_timeout_s=0.05)
    channel = await fanout.subscribe("alerts:a.io")
    await write(store, event(1), event(2), event(3))
    [alert] = await alerting.evaluate_once()
    assert memory.alerts == [alert]
    assert len(frames(channel)) == 1
    failures = "hitstream_alert_notifier_failures_total"
    assert sample(alerting, failures, {"notifier": "broken"}) == 1
    assert sample(alerting, failures, {"notifier": "stuck"}) == 1


async def test_a_failing_query_keeps_the_state_and_the_loop_goes_on(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    clock = Clock()
    memory = MemoryNotifier()
    alerting = make(
        store,
        fanout,
        [SPIKE, {**SPIKE, "name": "down", "site_id": "x.io", "op": "<", "threshold": 1}],
        [memory],
        clock,
    )
    await write(store, event(1), event(2), event(3))
    assert len(await alerting.evaluate_once()) == 2
    store.available = False
    clock.now = T0 + 3_600_000  # the events left the window, but nobody can measure it
    assert await alerting.evaluate_once() == []
    assert sample(alerting, "hitstream_alert_evaluation_errors_total", {"stage": "sites"}) == 1
    assert sample(alerting, "hitstream_alert_evaluation_errors_total", {"stage": "query"}) == 1
    assert {a["rule"] for a in alerting.active()} == {"spike", "down"}
    store.available = True
    [resolved] = await alerting.evaluate_once()
    assert (resolved.rule.name, resolved.transition.change) == ("spike", Change.RESOLVED)


async def test_a_failing_fanout_still_notifies(store: CountingStore) -> None:
    class DeadFanout(MemoryFanout):
        async def publish(self, channel: str, message: bytes) -> None:
            raise ConnectionError("redis gone")

    memory = MemoryNotifier()
    alerting = make(store, DeadFanout(), [SPIKE], [memory])
    await write(store, event(1), event(2), event(3))
    assert len(await alerting.evaluate_once()) == 1
    assert len(memory.alerts) == 1
    assert sample(alerting, "hitstream_alert_evaluation_errors_total", {"stage": "publish"}) == 1
    assert sample(alerting, "hitstream_alert_evaluation_errors_total", {"stage": "share"}) == 1


async def test_run_evaluates_every_interval_and_stops_when_asked(fanout: MemoryFanout) -> None:
    closed: list[str] = []
    three = asyncio.Event()

    class Closing(MemoryNotifier):
        async def close(self) -> None:
            closed.append("closed")

    class Failing(MemoryStore):
        calls = 0

        async def aggregate(self, query: StatsQuery) -> dict[str, float]:
            self.calls += 1
            if self.calls == 3:
                three.set()
            raise RuntimeError("a driver error nobody translated")

    rule = {**SPIKE, "site_id": "a.io"}
    alerting = make(Failing(), fanout, [rule], [Closing()], interval_s=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(alerting.run(stop))
    await asyncio.wait_for(three.wait(), 1.0)  # every round failed; the loop did not care
    stop.set()
    await asyncio.wait_for(task, 1.0)
    assert closed == ["closed"]
    assert alerting.rounds >= 3


async def test_only_the_process_that_leads_evaluates_and_a_lost_lead_forgets_state(
    fanout: MemoryFanout,
) -> None:
    class Shared(CountingStore):
        leads = True

        async def lead(self, name: str) -> bool:
            assert name == "alerting"
            return self.leads

    store = Shared()
    await write(store, *(event(n) for n in range(3)))
    rule = {**SPIKE, "site_id": "a.io"}
    alerting = make(store, fanout, [rule], clock=Clock())
    assert await alerting.leading()
    assert [a.transition.change for a in await alerting.evaluate_once()] == [Change.FIRING]
    assert sample(alerting, "hitstream_alerting_leader") == 1.0
    store.leads = False  # another processor took over: this one stops and forgets
    assert not await alerting.leading()
    assert alerting.active() == []
    assert sample(alerting, "hitstream_alerting_leader") == 0.0
    assert sample(alerting, "hitstream_alerts_firing", {"rule": "spike"}) == 0.0
    stop = asyncio.Event()
    task = asyncio.create_task(alerting.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 1.0)
    assert alerting.rounds == 1 and len(store.queries) == 1  # no round while not leading


async def test_a_round_that_cannot_tell_who_leads_keeps_the_state(fanout: MemoryFanout) -> None:
    """serve's processor child restarting: the lead cannot be read for a round. Forgetting
    the state then fired every firing rule a second time and lost its resolution."""

    class Restarting(CountingStore):
        down = False

        async def lead(self, name: str) -> bool:
            if self.down:
                raise ConnectionError("the store at control.sock went away")
            return True

    store, clock, memory = Restarting(), Clock(), MemoryNotifier()
    await write(store, *(event(n) for n in range(3)))
    held = {**SPIKE, "name": "held", "site_id": "a.io", "for_s": 600}
    alerting = make(store, fanout, [{**SPIKE, "site_id": "a.io"}, held], [memory], clock)
    assert await alerting.leading()
    await alerting.evaluate_once()
    assert sorted(a["state"] for a in alerting.active()) == ["firing", "pending"]
    store.down = True
    assert not await alerting.leading()  # no round now ...
    assert sample(alerting, "hitstream_alert_evaluation_errors_total", {"stage": "lead"}) == 1
    assert sample(alerting, "hitstream_alerting_leader") == 0.0  # not known to lead
    # ... and what fires is not forgotten; what was pending starts again (unseen meanwhile,
    # its for_s would count from before the gap)
    assert [(a["rule"], a["state"]) for a in alerting.active()] == [("spike", "firing")]
    store.down = False
    assert await alerting.leading()
    assert await alerting.evaluate_once() == []  # still firing: not fired again
    clock.now += 3_600_000  # the events left the window
    [resolved] = await alerting.evaluate_once()
    assert resolved.transition.change is Change.RESOLVED
    assert [a.transition.change for a in memory.alerts] == [Change.FIRING, Change.RESOLVED]
    assert sample(alerting, "hitstream_alerts_firing", {"rule": "spike"}) == 0.0


async def test_a_rule_filtered_by_a_goal_measures_the_goal(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    """``goal==Signup`` in a rule's filters, as in the Stats API (it failed every round:
    the query went to the store without the site's goals)."""
    await write(
        store,
        event(1, path="/signup/done"),
        event(2, path="/signup/done"),
        event(3, path="/pricing"),
    )
    await store.add_goal("a.io", Goal("Signup", page="/signup/*"))
    rule = {**SPIKE, "site_id": "a.io", "threshold": 2, "filters": "goal==Signup"}
    alerting = make(store, fanout, [rule, {**rule, "name": "tight", "threshold": 3}])
    fired = await alerting.evaluate_once()
    assert [(a.rule.name, a.transition.value) for a in fired] == [("spike", 2.0)]
    assert sample(alerting, "hitstream_alert_evaluation_errors_total", {"stage": "query"}) == 0


async def test_a_removed_site_leaves_every_site_rules_and_resolves(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    """A ``"*"`` rule covers registered sites with events: once a site is removed (its
    events may stay), its firing alert resolves, marked as gone, and is not listed again."""
    memory, clock = MemoryNotifier(), Clock()
    rule = {**SPIKE, "name": "idle", "op": "<", "threshold": 5}
    alerting = make(store, fanout, [rule], [memory], clock)
    await write(store, event(1, "gone.io"), event(2, "kept.io"))
    fired = await alerting.evaluate_once()
    assert sorted(a.site_id for a in fired) == ["gone.io", "kept.io"]
    assert await store.remove_site("gone.io")
    [gone] = await alerting.evaluate_once()
    assert (gone.site_id, gone.transition.change, gone.transition.gone) == (
        "gone.io",
        Change.RESOLVED,
        True,
    )
    assert "no longer registered" in gone.message() and gone.as_message()["gone"] is True
    assert [a["site_id"] for a in alerting.active()] == ["kept.io"]
    assert sample(alerting, "hitstream_alerts_firing", {"rule": "idle"}) == 1.0
    assert await alerting.evaluate_once() == []  # nothing fires again for it
    assert [a.site_id for a in store.queries[-1:]] == ["kept.io"]


# -- the webhook notifier ------------------------------------------------------------------


def an_alert(change: Change = Change.FIRING) -> Alert:
    rule = rule_from({**SPIKE, "severity": "critical", "description": "Look at /checkout."})
    return Alert("a.io", rule, Transition(change, 7.0, T0 + 5, T0))


class Hook:
    """A webhook endpoint answering a scripted list of statuses (then 200)."""

    def __init__(self, statuses: list[int | Exception] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[httpx.Request] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        if isinstance(status, Exception):
            raise status
        return httpx.Response(status, text="ok")


def webhook(hook: Hook, **kw: Any) -> tuple[WebhookNotifier, list[float]]:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    notifier = WebhookNotifier(
        "https://hooks.example.com/services/T000/B000/secret",
        transport=httpx.MockTransport(hook),
        backoff=Backoff(first_s=0.5, jitter=0.0, sleep=sleep),
        **kw,
    )
    return notifier, delays


async def test_the_webhook_posts_slack_compatible_json_with_every_field() -> None:
    hook = Hook()
    notifier, delays = webhook(hook)
    alert = an_alert()
    await notifier.notify(alert)
    await notifier.flush()
    [request] = hook.requests
    assert request.method == "POST"
    assert str(request.url) == "https://hooks.example.com/services/T000/B000/secret"
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body["text"] == (
        "[FIRING] critical · spike on a.io: pageviews >= 3 over 5m: pageviews is 7. "
        "Look at /checkout."
    )
    assert {k: v for k, v in body.items() if k not in ("text", "id")} == alert.as_message()
    assert body["id"] == f"spike:a.io:firing:{T0 + 5}" == request.headers["idempotency-key"]
    assert (notifier.delivered, notifier.failures, delays) == (1, 0, [])
    await notifier.close()


async def test_the_webhook_retries_with_backoff_then_delivers() -> None:
    hook = Hook([503, httpx.ConnectError("refused"), 429])
    notifier, delays = webhook(hook)
    await notifier.notify(an_alert())
    await notifier.flush()
    assert len(hook.requests) == 4
    assert len({r.headers["idempotency-key"] for r in hook.requests}) == 1  # one transition
    assert delays == [0.5, 1.0, 2.0]
    assert (notifier.delivered, notifier.failures) == (1, 0)
    await notifier.close()


async def test_the_webhook_gives_up_after_three_retries_and_counts_it() -> None:
    failures: list[str] = []
    hook = Hook([500, 500, 500, 500, 200])
    notifier, _ = webhook(hook, on_failure=lambda: failures.append("x"))
    await notifier.notify(an_alert())
    await notifier.flush()
    assert len(hook.requests) == 4
    assert (notifier.delivered, notifier.failures, failures) == (0, 1, ["x"])
    await notifier.close()


async def test_a_client_error_is_not_retried() -> None:
    hook = Hook([404])
    notifier, delays = webhook(hook)
    await notifier.notify(an_alert())
    await notifier.flush()
    assert (len(hook.requests), delays, notifier.failures) == (1, [], 1)
    await notifier.close()


async def test_a_slow_webhook_never_delays_notify_and_the_queue_is_bounded() -> None:
    hook = Hook()
    hook.release.clear()
    notifier, _ = webhook(hook, queue_size=2)
    for _ in range(5):
        await asyncio.wait_for(notifier.notify(an_alert()), 0.05)
    await asyncio.sleep(0.01)  # the worker holds one, the queue keeps the newest two
    assert len(hook.requests) == 1
    assert notifier.failures == 2
    hook.release.set()
    await notifier.flush()
    assert (len(hook.requests), notifier.delivered) == (3, 3)
    await notifier.close()


async def test_close_gives_up_on_a_webhook_that_never_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = Hook()
    hook.release.clear()
    notifier, _ = webhook(hook, close_timeout_s=0.05)
    await notifier.notify(an_alert())
    await notifier.notify(an_alert())
    await asyncio.sleep(0.01)  # the first is on its way, the second waits
    await asyncio.wait_for(notifier.close(), 1.0)
    assert notifier.delivered == 0
    # the one on its way counts too (it said 0 with one alert abandoned in flight)
    assert "webhook https://hooks.example.com: 2 alerts not sent" in caplog.text


async def test_webhook_failures_reach_the_alerting_metric(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    hook = Hook([400])
    metrics = AlertingMetrics(CollectorRegistry())
    notifier = WebhookNotifier(
        "http://127.0.0.1:9/hook",
        transport=httpx.MockTransport(hook),
        on_failure=lambda: metrics.notifier_failures.labels("webhook").inc(),
    )
    alerting = Alerting(store, fanout, [notifier], [rule_from(SPIKE)], metrics, clock=Clock())
    await write(store, event(1), event(2), event(3))
    await alerting.evaluate_once()
    await notifier.flush()
    assert sample(alerting, "hitstream_alert_notifier_failures_total", {"notifier": "webhook"}) == 1
    await alerting.close()


async def test_the_log_notifier_logs_at_the_severity(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="hitstream.alerts")
    await LogNotifier().notify(an_alert())
    await LogNotifier().notify(an_alert(Change.RESOLVED))
    assert [(r.levelname, r.getMessage()[:22]) for r in caplog.records] == [
        ("ERROR", "[FIRING] critical · sp"),
        ("INFO", "[RESOLVED] critical · "),
    ]


# -- wiring -----------------------------------------------------------------------------------


def test_notifiers_are_picked_by_url() -> None:
    made = make_notifiers("log://, https://hooks.slack.com/services/x ,http://127.0.0.1:1/h")
    assert [type(n).__name__ for n in made] == ["LogNotifier", "WebhookNotifier", "WebhookNotifier"]
    assert make_notifiers("") == []
    with pytest.raises(
        ConfigError, match=r"^HITSTREAM_ALERT_NOTIFIERS: unknown alert notifier 'smtp'"
    ):
        make_notifiers("smtp://mail.example.com")
    with pytest.raises(ConfigError, match=r"^HITSTREAM_ALERT_NOTIFIERS: a webhook URL needs http"):
        make_notifiers("https://")


async def test_make_alerting_reads_rules_from_json_or_a_file(
    tmp_path: Path, store: CountingStore, fanout: MemoryFanout
) -> None:
    registry = CollectorRegistry()
    assert make_alerting(store, fanout, rules=" ", registry=registry) is None
    inline = make_alerting(
        store, fanout, rules=json.dumps([SPIKE]), registry=registry, interval_s=2
    )
    assert inline is not None
    assert [r.name for r in inline.rules] == ["spike"] and inline.interval_s == 2
    assert [n.name for n in inline.notifiers] == ["log"]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [SPIKE]}))
    from_file = make_alerting(
        store, fanout, rules=str(path), notifiers="", registry=CollectorRegistry()
    )
    assert from_file is not None and from_file.rules == inline.rules
    assert from_file.notifiers == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            json.dumps([{**SPIKE, "op": "="}]),
            r"HITSTREAM_ALERT_RULES: rules\[0\]\.op: must be one of",
        ),
        ("/nonexistent/rules.json", "cannot read rules file '/nonexistent/rules.json'"),
        ("[1,", "HITSTREAM_ALERT_RULES: rules: is not valid JSON"),
    ],
)
def test_a_bad_rule_setting_refuses_to_start(rules: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_alerting(MemoryStore(), MemoryFanout(), rules=rules, registry=CollectorRegistry())


def test_a_bad_rules_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{**SPIKE, "window_s": -5}]))
    named = rf"^HITSTREAM_ALERT_RULES \('{path}'\): rules\[0\]\.window_s: must be between"
    with pytest.raises(ConfigError, match=named):
        make_alerting(MemoryStore(), MemoryFanout(), rules=str(path), registry=CollectorRegistry())


# -- the API ----------------------------------------------------------------------------------


async def api(alerting: Alerting | AlertBoard | None) -> httpx.AsyncClient:
    """The alerts routes, called by an admin (every site; sites a.io and b.io exist)."""
    registry = MemoryStore()
    await register(registry, "a.io", "b.io")
    app = FastAPI()
    app.state.services = AppServices(Metrics(), alerting=alerting, gate=Gatekeeper(registry))
    app.include_router(alerts_api.router)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers=bearer(await admin_key(registry)),
    )


async def test_the_alerts_api_lists_rules_active_and_recent(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    rules = [SPIKE, {**SPIKE, "name": "b-only", "site_id": "b.io"}]
    alerting = make(store, fanout, rules)
    await write(store, event(1), event(2), event(3))
    await alerting.evaluate_once()
    async with await api(alerting) as client:
        body = (await client.get("/api/v1/alerts", params={"site_id": "a.io"})).json()
        every = (await client.get("/api/v1/alerts")).json()
        bad = await client.get("/api/v1/alerts", params={"limit": 0})
    assert body["enabled"] is True
    assert [r["name"] for r in body["rules"]] == ["spike"]
    assert [(a["rule"], a["state"]) for a in body["active"]] == [("spike", "firing")]
    assert [(a["rule"], a["state"]) for a in body["recent"]] == [("spike", "firing")]
    assert [r["name"] for r in every["rules"]] == ["spike", "b-only"]
    assert bad.status_code == 422


async def test_the_alerts_api_says_when_alerting_is_off() -> None:
    async with await api(None) as client:
        body = (await client.get("/api/v1/alerts", params={"site_id": "a.io"})).json()
    assert body == {
        "enabled": False,
        "evaluated_here": False,
        "site_id": "a.io",
        "rules": [],
        "active": [],
        "recent": [],
    }


async def test_a_web_process_that_does_not_evaluate_shows_the_leaders_alerts(
    store: CountingStore, fanout: MemoryFanout
) -> None:
    """Scale-out: the processors evaluate, a web process answers the alerts API from the
    leader's last round (it said enabled: false, nothing listed, while a rule fired)."""
    leader = make(store, fanout, [SPIKE])
    board = AlertBoard(fanout, [rule_from(SPIKE)])
    stop = asyncio.Event()
    following = asyncio.create_task(board.follow(stop))
    for _ in range(100):
        if fanout._subscribers.get(STATE_CHANNEL):
            break
        await asyncio.sleep(0.01)
    await write(store, event(1), event(2), event(3))
    await leader.evaluate_once()
    for _ in range(100):
        if board.heard:
            break
        await asyncio.sleep(0.01)
    assert board.active("a.io") == leader.active("a.io") != []
    assert board.recent("a.io") == leader.recent("a.io") != []
    assert board.active("b.io") == [] and board.recent(None) == leader.recent(None)
    async with await api(board) as client:
        body = (await client.get("/api/v1/alerts", params={"site_id": "a.io"})).json()
    assert (body["enabled"], body["evaluated_here"]) == (True, False)
    assert [(a["rule"], a["state"]) for a in body["active"]] == [("spike", "firing")]
    assert [r["name"] for r in body["rules"]] == ["spike"]
    board.take(b"not json")  # an unreadable message changes nothing
    assert board.active("a.io") == leader.active("a.io")
    stop.set()
    await asyncio.wait_for(following, 1.0)
