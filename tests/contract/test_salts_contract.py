"""One suite for every salt keeper (salts/base.py), then what each keeps on top of it.

Within a UTC day the salts do not change; on the next day yesterday's current salt becomes
``previous`` and a new one is drawn; two days on, nothing of the first day is kept. The file
keeper survives a restart; the Redis keeper gives every collector the same salts and keeps
ingesting with a local salt when Redis is down.
"""

from __future__ import annotations

import json
import stat
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
