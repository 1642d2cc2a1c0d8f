"""One suite for every fan-out adapter: delivery, isolation, bounded queues, unsubscribe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from hitstream.fanout.base import Fanout
from hitstream.fanout.memory import MemoryFanout
from hitstream.fanout.redis import RedisFanout


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def fanout(request: pytest.FixtureRequest) -> AsyncIterator[Fanout]:
    adapter: Fanout
    if request.param == "memory":
        adapter = MemoryFanout()
    else:
        adapter = RedisFanout(
            request.getfixturevalue("redis_url"), prefix=f"test:{uuid.uuid4().hex[:8]}:"
        )
    await adapter.start()
    if isinstance(adapter, RedisFanout):
        await asyncio.wait_for(adapter.connected.wait(), 5)
    yield adapter
    await adapter.close()


async def settle(fanout: Fanout) -> None:
    if isinstance(fanout, RedisFanout):
        await asyncio.sleep(0.2)  # SUBSCRIBE travels to Redis before the first PUBLISH


async def test_every_subscriber_gets_every_message_in_order(fanout: Fanout) -> None:
    a = await fanout.subscribe("site:a")
    b = await fanout.subscribe("site:a")
    await settle(fanout)
    for i in range(5):
        await fanout.publish("site:a", f"m{i}".encode())
    for sub in (a, b):
        got = [await asyncio.wait_for(sub.get(), 2) for _ in range(5)]
        assert got == [f"m{i}".encode() for i in range(5)]


async def test_channels_are_isolated(fanout: Fanout) -> None:
    a = await fanout.subscribe("site:a")
    b = await fanout.subscribe("site:b")
    await settle(fanout)
    await fanout.publish("site:b", b"for-b")
    await fanout.publish("site:a", b"for-a")
    # messages arrive in publish order: had b's reached a, it would come before a's own
    assert await asyncio.wait_for(a.get(), 2) == b"for-a"
    assert await asyncio.wait_for(b.get(), 2) == b"for-b"
    assert len(a) == len(b) == 0


async def test_slow_subscriber_drops_oldest_and_counts(fanout: Fanout) -> None:
    slow = await fanout.subscribe("site:a", maxsize=3)
    await settle(fanout)
    for i in range(10):
        await fanout.publish("site:a", f"{i}".encode())
    await asyncio.sleep(0.2)
    got = [await asyncio.wait_for(slow.get(), 2) for _ in range(3)]
    assert got == [b"7", b"8", b"9"]
    assert slow.dropped == 7


async def test_unsubscribed_gets_nothing_more(fanout: Fanout) -> None:
    sub = await fanout.subscribe("site:a")
    await settle(fanout)
    await fanout.unsubscribe(sub)
    await fanout.publish("site:a", b"late")
    await asyncio.sleep(0.1)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(sub.get(), 1)
