"""One suite for every tally adapter (collector rejections shared between processes), and the
rule that a dead tally never fails the caller and loses nothing the caller still holds."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hitstream.bootstrap import Runtime, build
from hitstream.services.collector import MAX_REJECTION_KEYS
from hitstream.settings import Settings
from hitstream.tally.base import Counts, Tally
from hitstream.tally.memory import MemoryTally
from hitstream.tally.redis import RedisTally
from tests.brokers import REDIS_URL, unreachable


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def tally(request: pytest.FixtureRequest) -> AsyncIterator[Tally]:
    adapter: Tally = (
        MemoryTally()
        if request.param == "memory"
        else RedisTally(
            request.getfixturevalue("redis_url"), prefix=f"test:{uuid.uuid4().hex[:8]}:"
        )
    )
    await adapter.start()
    yield adapter
    await adapter.close()


async def test_counts_add_up_per_site_and_the_siteless_ones_only_in_all(tally: Tally) -> None:
    """A refusal no site could be read from is another sender's: no site's answer has it."""
    assert await tally.read("a.io") == {}
    assert await tally.add({("a.io", "type: unknown"): 2, ("", "request 413: body"): 1})
    assert await tally.add({("a.io", "type: unknown"): 3, ("b.io", "site_id: too long"): 1})
    assert await tally.read("a.io") == {"type: unknown": 5}
    assert await tally.read("b.io") == {"site_id: too long": 1}
    assert await tally.read(None) == {
        "type: unknown": 5,
        "request 413: body": 1,
        "site_id: too long": 1,
    }


async def test_two_handles_on_one_tally_see_each_others_counts(tally: Tally) -> None:
    if not isinstance(tally, RedisTally):
        pytest.skip("a memory tally belongs to one process")
    other = RedisTally(tally.url, prefix=tally.prefix)
    await other.start()
    try:
        assert await other.add({("a.io", "name: too long"): 4})
        assert await tally.read("a.io") == {"name: too long": 4}
    finally:
        await other.close()


@pytest.mark.integration
async def test_redis_down_counts_nothing_and_says_so() -> None:
    tally = RedisTally(unreachable(REDIS_URL), timeout_s=0.2)
    await tally.start()
    assert not await tally.add({("a.io", "x"): 1})
    assert await tally.read("a.io") == {}
    await tally.close()


class Refusing(MemoryTally):
    """A tally that is down until ``up`` is set."""

    up = False

    async def add(self, counts: Counts) -> bool:
        return await super().add(counts) if self.up else False


async def test_the_runtime_keeps_what_the_tally_refused_and_hands_it_over_later(
    tmp_path: Path,
) -> None:
    runtime: Runtime = build(Settings(data_dir=tmp_path), frozenset({"collector"}))
    rejections, collector = runtime.rejections, runtime.collector
    assert collector is not None
    rejections.tally = refusing = Refusing()
    collector._reject("a.io", "type: unknown")
    collector._reject("", "request 400: body")
    await rejections.pump_once()
    assert await refusing.read("a.io") == {}
    assert collector.pending == Counter(
        {("a.io", "type: unknown"): 1, ("", "request 400: body"): 1}
    )
    # what the panel shows meanwhile: nothing is lost from view either (the site-less one
    # in the answer of every site only)
    assert await rejections.read("a.io") == {"type: unknown": 1}
    assert await rejections.read(None) == {"type: unknown": 1, "request 400: body": 1}
    refusing.up = True
    await rejections.pump_once()
    assert collector.pending == Counter()
    assert await rejections.read("a.io") == {"type: unknown": 1}
    assert await rejections.read(None) == {"type: unknown": 1, "request 400: body": 1}


def test_the_collector_counts_at_most_so_many_sites_apart(tmp_path: Path) -> None:
    collector = build(Settings(data_dir=tmp_path), frozenset({"collector"})).collector
    assert collector is not None
    for n in range(MAX_REJECTION_KEYS + 5):
        collector._reject(f"site{n}", "type: unknown")
    assert len(collector.rejections) == MAX_REJECTION_KEYS + 1
    assert collector.rejections[("", "too many distinct sites and reasons to tell apart")] == 5
