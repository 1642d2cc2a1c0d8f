"""The connection cap's choices (whom to close, when to refuse, how often to say so) and the
descriptor budget, without a network: the real server is in tests/e2e/test_edge.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hitstream.web.guard import LOG_EVERY_S, Edge, EdgeLimits
from hitstream.web.server import FD_RESERVE, fit_to_descriptors


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeConnection:
    def __init__(self) -> None:
        self.transport = FakeTransport()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def edge_with(clock: Clock, closes: list[str]) -> Edge:
    return Edge(EdgeLimits(max_connections=3), on_close=closes.append, clock=clock)


def test_the_longest_waiting_connection_is_closed_first() -> None:
    closes: list[str] = []
    edge = edge_with(Clock(), closes)
    first: Any = FakeConnection()
    second: Any = FakeConnection()
    third: Any = FakeConnection()
    for conn in (first, second, third):
        edge.reusable[conn] = None
    edge.reusable.move_to_end(first)  # first became idle again last
    assert edge.make_room(3) is True
    assert (first.transport.closed, second.transport.closed, third.transport.closed) == (
        False,
        True,
        False,
    )
    assert list(edge.reusable) == [third, first]
    assert closes == ["evicted"]


def test_with_nothing_idle_a_new_connection_is_refused() -> None:
    closes: list[str] = []
    edge = edge_with(Clock(), closes)
    assert edge.make_room(3) is False
    assert closes == ["refused"]


def test_reaching_the_cap_is_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    edge = edge_with(clock, [])
    caplog.set_level(logging.WARNING, logger="hitstream.edge")
    for _ in range(5):
        edge.make_room(3)  # refused, nothing idle
    assert len(caplog.records) == 1
    clock.now += LOG_EVERY_S
    conn: Any = FakeConnection()
    edge.reusable[conn] = None
    edge.make_room(4)
    assert len(caplog.records) == 2
    second = caplog.records[1].getMessage()
    assert "4 connections open (HITSTREAM_MAX_CONNECTIONS=3)" in second
    assert "1 waiting connection(s) closed to make room, 4 new connection(s) refused" in second


def test_a_cap_beyond_the_descriptor_limit_is_lowered_to_fit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resource = pytest.importorskip("resource")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit on open files here")
    caplog.set_level(logging.WARNING)
    assert fit_to_descriptors(hard * 2) == hard - FD_RESERVE
    assert "capping connections" in caplog.text
    assert fit_to_descriptors(10) == 10  # well within: unchanged
