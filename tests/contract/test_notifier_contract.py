"""One suite for every notifier adapter: what the port promises alerting (notifiers/base.py).

Every alert handed to ``notify`` is delivered once, in order, firing and resolved alike, with
the alert's one-line text; ``notify`` never waits for a slow delivery; ``close`` delivers what
is queued and may be called with nothing queued, or twice. Each adapter joins by one entry in
``ADAPTERS``, with a way to see what it delivered and, where delivery can be slow, to stall it.
The webhook talks to an in-process transport (``httpx.MockTransport``): the wire is the
integration tier's business, the promises are the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from hitstream.domain.alerts import Alert, Change, Transition, rule_from
from hitstream.notifiers.base import Notifier
from hitstream.notifiers.log import LogNotifier
from hitstream.notifiers.memory import MemoryNotifier
from hitstream.notifiers.webhook import WebhookNotifier

RULE = rule_from(
    {"name": "spike", "metric": "pageviews", "window_s": 300, "op": ">=", "threshold": 3}
)
GUARD_S = 5.0
"""Turns a hang into a failure; never a measure of speed."""


def alert(n: int, change: Change = Change.FIRING) -> Alert:
    return Alert(f"site{n}.example", RULE, Transition(change, float(n), 1_000 * n, 0))


@dataclass
class Harness:
    notifier: Notifier
    delivered: Callable[[], list[str]]
    """The text of each alert delivered so far, in order."""
    stall: Callable[[], None] = lambda: None
    release: Callable[[], None] = lambda: None


def _memory() -> Harness:
    notifier = MemoryNotifier()
    return Harness(notifier, lambda: [a.text() for a in notifier.alerts])


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


def _log() -> Harness:
    records = _Records()
    logger = logging.getLogger(f"test.notifier.{id(records)}")
    logger.propagate = False
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    return Harness(LogNotifier(logger), lambda: list(records.texts))


def _webhook() -> Harness:
    seen: list[str] = []
    gate = asyncio.Event()
    gate.set()

    async def answer(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        seen.append(json.loads(request.content)["text"])
        return httpx.Response(200)

    notifier = WebhookNotifier(
        "https://hooks.example.com/services/T/B/secret", transport=httpx.MockTransport(answer)
    )
    return Harness(notifier, lambda: list(seen), stall=gate.clear, release=gate.set)


ADAPTERS: dict[str, Callable[[], Harness]] = {
    "memory": _memory,
    "log": _log,
    "webhook": _webhook,
}


@pytest.fixture(params=sorted(ADAPTERS))
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    made = ADAPTERS[str(request.param)]()
    yield made
    made.release()
    await made.notifier.close()


async def test_every_alert_is_delivered_once_in_order(harness: Harness) -> None:
    sent = [alert(1), alert(2), alert(1, Change.RESOLVED), alert(3)]
    for one in sent:
        await harness.notifier.notify(one)
    await asyncio.wait_for(harness.notifier.close(), GUARD_S)
    assert harness.delivered() == [one.text() for one in sent]


async def test_the_text_says_what_fired_and_what_resolved(harness: Harness) -> None:
    await harness.notifier.notify(alert(7))
    await harness.notifier.notify(alert(7, Change.RESOLVED))
    await asyncio.wait_for(harness.notifier.close(), GUARD_S)
    firing, resolved = harness.delivered()
    assert firing.startswith("[FIRING]") and "spike on site7.example" in firing
    assert resolved.startswith("[RESOLVED]") and "spike on site7.example" in resolved


async def test_notify_never_waits_for_a_stalled_delivery(harness: Harness) -> None:
    harness.stall()
    for n in range(3):
        await asyncio.wait_for(harness.notifier.notify(alert(n)), GUARD_S)
    harness.release()
    await asyncio.wait_for(harness.notifier.close(), GUARD_S)
    assert harness.delivered() == [alert(n).text() for n in range(3)]


async def test_close_with_nothing_queued_and_twice(harness: Harness) -> None:
    await asyncio.wait_for(harness.notifier.close(), GUARD_S)
    await asyncio.wait_for(harness.notifier.close(), GUARD_S)
    assert harness.delivered() == []


def test_each_adapter_has_a_name_for_its_failure_metric(harness: Harness) -> None:
    assert isinstance(harness.notifier.name, str) and harness.notifier.name
    assert harness.notifier.name != Notifier.name
