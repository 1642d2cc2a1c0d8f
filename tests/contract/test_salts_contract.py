"""One suite for every salt keeper (salts/base.py), then what each keeps on top of it.

Within a UTC day the salts do not change; on the next day yesterday's current salt becomes
``previous`` and a new one is drawn; two days on, nothing of the first day is kept. The file
keeper survives a restart; the Redis keeper gives every collector the same salts and keeps
ingesting with a local salt when Redis is down.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hitstream.domain.visitors import DAY_MS, SALT_BYTES
from hitstream.salts.base import SaltKeeper
from hitstream.salts.file import FileSaltKeeper
from hitstream.salts.memory import MemorySaltKeeper
from hitstream.salts.redis import RedisSaltKeeper
from tests.brokers import REDIS_URL, unreachable
from tests.faults.services import PrivateRedis

DAY0 = 20_500 * DAY_MS + 3_600_000  # 01:00 UTC


def _redis(request: pytest.FixtureRequest, _: Path) -> SaltKeeper:
    url = request.getfixturevalue("redis_url")
    return RedisSaltKeeper(url, prefix=f"test:salt:{uuid.uuid4().hex[:8]}:")


KEEPERS: dict[str, Callable[[pytest.FixtureRequest, Path], SaltKeeper]] = {
    "memory": lambda _request, _path: MemorySaltKeeper(),
    "file": lambda _request, path: FileSaltKeeper(path / "salts.json"),
    "redis": _redis,
}


@pytest.fixture(
    params=[
        "memory",
        "file",
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
async def keeper(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SaltKeeper]:
    made = KEEPERS[str(request.param)](request, tmp_path)
    yield made
    await made.close()


async def test_a_day_keeps_its_salts(keeper: SaltKeeper) -> None:
    morning = await keeper.salts(DAY0)
    evening = await keeper.salts(DAY0 + 20 * 3_600_000)
    assert morning == evening
    assert len(morning.current) == SALT_BYTES and morning.day == str(DAY0 // DAY_MS)


async def test_midnight_rotates_and_yesterday_stays_one_day(keeper: SaltKeeper) -> None:
    first = await keeper.salts(DAY0)
    second = await keeper.salts(DAY0 + DAY_MS)
    assert second.previous == first.current  # a visit crossing midnight stays one visit
    assert second.current != first.current
    third = await keeper.salts(DAY0 + 2 * DAY_MS)
    assert third.previous == second.current
    assert first.current not in (third.current, third.previous)  # day one is gone


async def test_repeated_calls_agree(keeper: SaltKeeper) -> None:
    again = [await keeper.salts(DAY0 + n * 1000) for n in range(5)]
    assert len({s.current for s in again}) == 1


# -- beyond the contract: what each keeper adds -----------------------------------------------


async def test_the_file_keeper_survives_a_restart_and_hides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "salts.json"
    before = await FileSaltKeeper(path).salts(DAY0)
    assert await FileSaltKeeper(path).salts(DAY0 + 60_000) == before  # a restart, same day
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert set(stored) == {"day", "current", "previous"}  # two salts at most, never more
    await FileSaltKeeper(path).salts(DAY0 + 2 * DAY_MS)
    assert before.current.hex() not in path.read_text()  # day one is gone from the disk too


async def test_the_file_keeper_keeps_an_older_versions_salts_for_their_day(
    tmp_path: Path,
) -> None:
    """A salts file of 16-byte salts (written before visitor ids had a day prefix) is used
    as it is for the rest of its day, so visitors keep their ids over an upgrade; the next
    day's salt is a new, full-length one, and the old one stays as yesterday's."""
    path = tmp_path / "salts.json"
    old = {"day": str(DAY0 // DAY_MS), "current": "ab" * 16, "previous": "cd" * 16}
    path.write_text(json.dumps(old))
    keeper = FileSaltKeeper(path)
    today = await keeper.salts(DAY0 + 3_600_000)
    assert (today.current.hex(), today.previous.hex()) == (old["current"], old["previous"])
    tomorrow = await keeper.salts(DAY0 + DAY_MS)
    assert tomorrow.previous.hex() == old["current"] and len(tomorrow.current) == SALT_BYTES


async def test_the_file_keeper_starts_afresh_from_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "salts.json"
    path.write_text("{not json")
    salts = await FileSaltKeeper(path).salts(DAY0)
    assert json.loads(path.read_text())["current"] == salts.current.hex()


async def test_memory_keepers_are_each_their_own() -> None:
    assert (await MemorySaltKeeper().salts(DAY0)) != (await MemorySaltKeeper().salts(DAY0))


@pytest.mark.integration
async def test_redis_keepers_share_a_day_salt(redis_url: str) -> None:
    prefix = f"test:salt:{uuid.uuid4().hex[:8]}:"
    one, two = RedisSaltKeeper(redis_url, prefix=prefix), RedisSaltKeeper(redis_url, prefix=prefix)
    try:
        assert await one.salts(DAY0) == await two.salts(DAY0)  # two collectors hash alike
    finally:
        await one.close()
        await two.close()


async def test_a_redis_keeper_without_redis_keeps_ingesting_on_a_local_salt() -> None:
    keeper = RedisSaltKeeper(unreachable(REDIS_URL))
    try:
        salts = await keeper.salts(DAY0)
        assert len(salts.current) == SALT_BYTES
        assert await keeper.salts(DAY0 + 1000) == salts  # the same local salt all day
    finally:
        await keeper.close()


@pytest.mark.integration
async def test_a_redis_back_empty_gets_the_salts_in_use_back(redis_url: str) -> None:
    """Redis restarted without its data: the running collector writes its salts back, so a
    collector started after that hashes alike (it drew new ones and counted every
    returning visitor again); one that started first wins and the other takes its salts."""
    import redis.asyncio as aioredis

    prefix = f"test:salt:{uuid.uuid4().hex[:8]}:"
    raw = aioredis.Redis.from_url(redis_url)
    running = RedisSaltKeeper(redis_url, prefix=prefix)
    late = RedisSaltKeeper(redis_url, prefix=prefix)
    later = RedisSaltKeeper(redis_url, prefix=prefix)
    try:
        before = await running.salts(DAY0)
        await raw.delete(*[key async for key in raw.scan_iter(prefix + "*")])  # back empty
        await running.recheck()
        assert await late.salts(DAY0) == before
        await raw.delete(*[key async for key in raw.scan_iter(prefix + "*")])
        drawn = await later.salts(DAY0)  # this one drew first this time
        assert drawn.current != before.current
        await running.recheck()
        assert await running.salts(DAY0) == drawn
    finally:
        for keeper in (running, late, later):
            await keeper.close()
        await raw.aclose()


@pytest.mark.integration
async def test_a_local_salt_gives_way_to_the_shared_one_when_redis_answers(
    tmp_path: Path, redis_url: str
) -> None:
    """Redis away when a collector needed the day's salt: it draws a local one, and takes
    the shared one once Redis answers, by itself, off the request path (it kept the local
    one all day, splitting every visitor it saw from the other collectors')."""
    server = PrivateRedis(tmp_path / "redis", persistent=False)
    prefix = f"test:salt:{uuid.uuid4().hex[:8]}:"
    alone = RedisSaltKeeper(server.url, prefix=prefix, recheck_ms=1000)
    shared = RedisSaltKeeper(server.url, prefix=prefix)
    try:
        local = await alone.salts(DAY0)  # nothing listens yet
        await alone.recheck()
        assert await alone.salts(DAY0 + 500) == local  # Redis still away: kept
        server.start()
        common = await shared.salts(DAY0)
        assert common.current != local.current
        got = local
        for step in range(1, 200):  # every call past recheck_ms starts a check
            got = await alone.salts(DAY0 + 3000 + step * 1000)
            if got == common:
                break
            await asyncio.sleep(0.01)
        assert got == common
    finally:
        await alone.close()
        await shared.close()
        server.stop()


@pytest.mark.integration
async def test_a_salt_drawn_in_an_outage_gives_way_to_the_shared_one(tmp_path: Path) -> None:
    """Redis restarted empty while a collector started: its local salt must not become
    everyone's. It only looks while Redis is empty; a collector that holds the shared salt
    writes it back, and the local one gives way. Alone, it writes its salt on the second
    empty look in a row; every salt expires an hour after its next day ends."""
    import redis.asyncio as aioredis

    server = PrivateRedis(tmp_path / "redis", persistent=False)
    server.start()
    prefix = f"test:salt:{uuid.uuid4().hex[:8]}:"
    day = str(DAY0 // DAY_MS)
    running = RedisSaltKeeper(server.url, prefix=prefix)
    late = RedisSaltKeeper(server.url, prefix=prefix)
    solo = RedisSaltKeeper(server.url, prefix=f"{prefix}solo:")
    raw = aioredis.Redis.from_url(server.url)
    try:
        shared = await running.salts(DAY0)
        server.stop()
        local = await late.salts(DAY0)  # drawn while Redis is away
        own = await solo.salts(DAY0)  # (a collector with nobody to share with)
        assert local.current != shared.current
        server.start()  # back, empty
        await late.recheck()  # Redis empty: it only looks
        await solo.recheck()
        assert await raw.get(prefix + day) is None
        for _ in range(5):  # the collector holding the shared salt writes it back (once it
            await running.recheck()  # has reconnected)
            if await raw.get(prefix + day):
                break
        assert await raw.get(prefix + day) == shared.current
        await late.recheck()
        assert await late.salts(DAY0) == shared  # the local one gave way
        await solo.recheck()  # empty at two rechecks in a row: its own salt is written
        assert await raw.get(f"{prefix}solo:{day}") == own.current
        ttl = await raw.ttl(prefix + day)
        ends = (int(day) + 2) * DAY_MS // 1000 + 3600  # (DAY0 is past: the 60 s floor)
        assert 0 < ttl <= max(60, ends - int(time.time()))
        now = time.time()
        current = RedisSaltKeeper(server.url, prefix=f"{prefix}now:")
        today = (await current.salts(int(now * 1000))).day
        await current.close()
        ends = (int(today) + 2) * DAY_MS // 1000 + 3600  # an hour after tomorrow ends
        assert ends - now - 5 <= await raw.ttl(f"{prefix}now:{today}") <= ends - now + 1
    finally:
        for keeper in (running, late, solo):
            await keeper.close()
        await raw.aclose()
        server.stop()
