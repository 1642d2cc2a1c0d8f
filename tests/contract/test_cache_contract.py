"""One suite for every cache adapter, and the rule that a dead cache only costs speed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from hitstream.cache.base import Cache
from hitstream.cache.memory import MemoryCache
from hitstream.cache.redis import RedisCache
from tests.brokers import REDIS_URL, unreachable


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    adapter: Cache = (
        MemoryCache(100)
        if request.param == "memory"
        else RedisCache(
            request.getfixturevalue("redis_url"), prefix=f"test:{uuid.uuid4().hex[:8]}:"
        )
    )
    await adapter.start()
    yield adapter
    await adapter.close()


async def test_set_then_get(cache: Cache) -> None:
    assert await cache.get("k") is None
    await cache.set("k", b"value", 60)
    assert await cache.get("k") == b"value"


async def test_entries_expire(cache: Cache) -> None:
    await cache.set("short", b"x", 1)
    await asyncio.sleep(1.2)
    assert await cache.get("short") is None


async def test_memory_cache_is_bounded() -> None:
    cache = MemoryCache(2)
    for key in "abc":
        await cache.set(key, key.encode(), 60)
    assert [await cache.get(k) for k in "abc"] == [None, b"b", b"c"]


@pytest.mark.integration
async def test_redis_down_is_a_miss_not_an_error() -> None:
    cache = RedisCache(unreachable(REDIS_URL), timeout_s=0.2)
    await cache.start()
    await cache.set("k", b"v", 60)
    assert await cache.get("k") is None
    assert cache.errors == 2
    await cache.close()
