"""The Redis Streams log against the local Redis: one active member, take-over, no recount.

Each test uses its own stream key (deleted afterwards) in the test database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hitstream.errors import LogUnavailable
from hitstream.log.base import LogMessage
from hitstream.log.redis_consumer import (
    _READ,
    RedisConsumer,
    StreamSettings,
    id_to_offset,
    offset_to_id,
)
from hitstream.log.redis_streams import RedisStreamsLog, parse_url
from tests.brokers import delete_redis_keys, unique_name

LEASE_MS = 600


@pytest.fixture
async def log(redis_url: str) -> AsyncIterator[RedisStreamsLog]:
    key = f"test:{unique_name()}"
    opened = RedisStreamsLog(f"{redis_url}?stream={key}", claim_idle_ms=LEASE_MS)
    await opened.start()
    yield opened
    await opened.close()
    await delete_redis_keys(redis_url, key)


async def nowhere(partition: int) -> int | None:
    return None


async def take(consumer: RedisConsumer, count: int) -> list[LogMessage]:
    out: list[LogMessage] = []
    for _ in range(20):
        if len(out) >= count:
            break
        out.extend(await consumer.poll(count - len(out), 0.25))
    return out


def consumer(log: RedisStreamsLog, positions: object = nowhere) -> RedisConsumer:
    made = log.consumer("g", positions)  # type: ignore[arg-type]
    assert isinstance(made, RedisConsumer)
    return made


async def die(member: RedisConsumer) -> None:
    """A process that vanished: it stops renewing its lease and never acknowledges."""
    assert member._keepalive is not None
    member._keepalive.cancel()


async def pending(log: RedisStreamsLog) -> list[tuple[object, object]]:
    rows = await log.client().xpending_range(log.key, "g", min="-", max="+", count=100)
    return [(r["message_id"], r["consumer"]) for r in rows]


def test_ids_map_to_ordered_offsets() -> None:
    ids = ["0-1", "1-0", "1-1", "1700000000000-0", "1700000000000-1048575", "1700000000001-0"]
    offsets = [id_to_offset(i) for i in ids]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(ids)
    assert [offset_to_id(o) for o in offsets] == ids
    assert offset_to_id(id_to_offset("1700000000001-0") - 1) == "1700000000000-1048575"
    assert id_to_offset(f"{2**43 - 1}-{2**20 - 1}") == 2**63 - 1  # a signed BIGINT, to 2248
    with pytest.raises(LogUnavailable):
        id_to_offset("1-1048576")


def test_url_names_the_stream_and_keeps_the_rest() -> None:
    assert parse_url("redis://h:6379/2?stream=a:b&ssl_cert_reqs=none") == (
        "redis://h:6379/2?ssl_cert_reqs=none",
        "a:b",
    )
    assert parse_url("redis://h")[1] == "hitstream:events"


@pytest.mark.integration
async def test_one_active_member_and_a_dead_ones_pending_are_claimed(log: RedisStreamsLog) -> None:
    await log.append([(b"k", b"%d" % i) for i in range(5)])
    first, standby = consumer(log), consumer(log)
    got = await take(first, 3)
    assert [m.value for m in got] == [b"0", b"1", b"2"]
    assert await standby.poll(10, 0.3) == []  # the lease is held: the standby reads nothing
    assert standby.generation == 0

    await die(first)
    taken = await take(standby, 5)  # after the lease lapses: the dead one's 3, then the rest
    assert [m.value for m in taken] == [b"0", b"1", b"2", b"3", b"4"]
    assert standby.generation == 1
    assert {owner for _, owner in await pending(log)} == {standby.member.encode()}
    await standby.commit({0: taken[-1].offset + 1})
    assert await pending(log) == []
    await standby.close()


@pytest.mark.integration
async def test_store_ahead_of_the_group_is_not_counted_twice(log: RedisStreamsLog) -> None:
    """A crash after the store transaction, before XACK: the store says "after 2"."""
    await log.append([(b"k", b"%d" % i) for i in range(5)])
    first = consumer(log)
    got = await take(first, 5)
    stored = got[2].offset + 1
    await die(first)

    async def store(partition: int) -> int | None:
        return stored

    second = consumer(log, store)
    rest = await take(second, 2)
    assert [m.value for m in rest] == [b"3", b"4"]
    assert await second.poll(10, 0.2) == []
    # the stored-but-unacknowledged entries below the position are acknowledged, not redone
    assert [entry for entry, _ in await pending(log)] == [
        offset_to_id(m.offset).encode() for m in got[3:]
    ]
    await second.close()


@pytest.mark.integration
async def test_a_member_that_lost_its_lease_reads_nothing(log: RedisStreamsLog) -> None:
    paused, other = consumer(log), consumer(log)
    await log.append([(b"k", b"a")])
    assert [m.value for m in await take(paused, 1)] == [b"a"]
    await die(paused)  # e.g. a long GC or a stopped VM: its lease lapses meanwhile
    assert [m.value for m in await take(other, 1)] == [b"a"]
    await log.append([(b"k", b"b"), (b"k", b"c")])

    assert await paused.poll(10, 0.2) == []  # woken up: its read is refused by the script
    assert paused.generation == 2  # it knows its partition moved
    assert [m.value for m in await take(other, 2)] == [b"b", b"c"]
    await other.close()


@pytest.mark.integration
async def test_close_hands_over_at_once(log: RedisStreamsLog) -> None:
    """A clean shutdown releases the lease: the standby does not wait for it to lapse."""
    long_lease = StreamSettings(log.key, lease_ms=60_000, op_timeout_s=5.0)
    first = RedisConsumer(log, long_lease, "g", nowhere)
    second = RedisConsumer(log, long_lease, "g", nowhere)
    await log.append([(b"k", b"a"), (b"k", b"b")])
    got = await take(first, 2)
    await first.commit({0: got[0].offset + 1})
    assert await second.poll(10, 0.2) == []
    await first.close()
    assert [m.value for m in await take(second, 1)] == [b"b"]  # not acknowledged: again
    await second.close()


@pytest.mark.integration
async def test_lag_counts_what_the_group_has_not_read(log: RedisStreamsLog) -> None:
    await log.append([(b"k", b"%d" % i) for i in range(7)])
    member = consumer(log)
    assert len(await take(member, 3)) == 3
    assert await member.lag() == 4
    await member.close()


@pytest.mark.integration
async def test_concurrent_appends_share_writes(log: RedisStreamsLog) -> None:
    calls = 0
    script = log._append_script

    async def counting(**kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return await script(**kwargs)

    log._append_script = counting
    await asyncio.gather(*(log.append([(b"k", b"%d" % i)]) for i in range(300)))
    assert calls < 300  # group commit at work
    member = consumer(log)
    assert sorted(int(m.value) for m in await take(member, 300)) == list(range(300))
    await member.close()


@pytest.mark.integration
async def test_acknowledged_entries_are_trimmed_and_unread_ones_kept(redis_url: str) -> None:
    key = f"test:{unique_name()}"
    log = RedisStreamsLog(f"{redis_url}?stream={key}", retention_s=0)
    await log.start()
    try:
        for start in range(0, 250, 50):
            await log.append([(b"k", b"%d" % i) for i in range(start, start + 50)])
        member = consumer(log)
        read = await take(member, 200)
        await member.commit({0: read[-1].offset + 1})
        assert 50 <= await log.client().xlen(key) < 250  # whole nodes below the group go
        rest = await take(member, 50)
        assert [int(m.value) for m in rest] == list(range(200, 250))
        await member.close()
    finally:
        await log.close()
        await delete_redis_keys(redis_url, key)


@pytest.mark.integration
async def test_maxlen_bounds_the_stream(redis_url: str) -> None:
    key = f"test:{unique_name()}"
    log = RedisStreamsLog(f"{redis_url}?stream={key}", maxlen=10)
    await log.start()
    try:
        for start in range(0, 1000, 100):
            await log.append([(b"k", b"%d" % i) for i in range(start, start + 100)])
        assert await log.client().xlen(key) <= 200  # approximate: whole nodes of 100
    finally:
        await log.close()
        await delete_redis_keys(redis_url, key)


@pytest.mark.integration
async def test_a_position_past_the_stream_skips_nothing_new(log: RedisStreamsLog) -> None:
    """A store position from elsewhere (another Redis, a clock ahead) that lies beyond this
    stream's newest entry must not make the group skip the entries still to come."""
    await log.append([(b"k", b"old")])

    async def far_ahead(partition: int) -> int | None:
        return 2**62

    member = consumer(log, far_ahead)
    assert await member.poll(10, 0.2) == []  # what is there counts as stored
    await log.append([(b"k", b"new")])
    assert [m.value for m in await take(member, 1)] == [b"new"]
    await member.close()


@pytest.mark.integration
async def test_a_redis_that_restarted_empty_is_read_again(
    log: RedisStreamsLog, redis_url: str
) -> None:
    """Redis without persistence restarted: stream, group and lease are gone. The active
    member takes the lease again, recreates the group at the store's position and reads
    what collectors append from then on: no ``NOGROUP`` loop, no restart."""
    await log.append([(b"k", b"before")])
    stored: int | None = None

    async def store(partition: int) -> int | None:
        return stored

    member = consumer(log, store)
    got = await take(member, 1)
    assert [m.value for m in got] == [b"before"]
    stored = got[0].offset + 1
    await member.commit({0: stored})

    await delete_redis_keys(redis_url, log.key)  # what an empty restart leaves
    assert await member.poll(10, 0.2) == []  # its lease is gone: it lets go and takes over
    await log.append([(b"k", b"after-1"), (b"k", b"after-2")])
    after = await take(member, 2)
    assert [m.value for m in after] == [b"after-1", b"after-2"]
    assert all(m.offset >= stored for m in after)
    groups = await log.client().xinfo_groups(log.key)
    assert [g["name"] for g in groups] == [b"g"]
    await member.close()


@pytest.mark.integration
async def test_a_destroyed_group_is_recreated_at_the_stored_position(
    log: RedisStreamsLog,
) -> None:
    await log.append([(b"k", b"a"), (b"k", b"b")])
    member = consumer(log)
    got = await take(member, 1)
    stored = got[0].offset + 1
    await member.commit({0: stored})

    async def store(partition: int) -> int | None:
        return stored

    member._lookup = store  # from now on the store knows "a"
    await log.client().xgroup_destroy(log.key, "g")
    with pytest.raises(LogUnavailable):
        await member.poll(10, 0.2)  # NOGROUP: the member lets its lease go
    assert [m.value for m in await take(member, 1)] == [b"b"]
    await member.close()


@pytest.mark.integration
async def test_a_lease_given_up_locally_but_still_ours_is_taken_back(redis_url: str) -> None:
    """Redis away longer than renewals can wait: the member gives its lease up locally, but
    a Redis that kept its data still holds the lease under this member's name. The member
    takes it back at once instead of waiting for it to expire (a minute here)."""
    key = f"test:{unique_name()}"
    log = RedisStreamsLog(f"{redis_url}?stream={key}", claim_idle_ms=60_000)
    await log.start()
    try:
        member = consumer(log)
        await log.append([(b"k", b"a")])
        assert [m.value for m in await take(member, 1)] == [b"a"]
        await member._lose("renewals failed while Redis was away")
        await log.append([(b"k", b"b")])
        # its unacknowledged "a" first (claimed back), then "b": well before the lease expires
        assert [m.value for m in await take(member, 2)] == [b"a", b"b"]
        await member.close()
    finally:
        await log.close()
        await delete_redis_keys(redis_url, key)


class LostReply:
    """The read script runs on the server (its entries are delivered to the member), then
    the connection drops before the reply arrives: what a Redis shutting down can do."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.armed = True

    async def __call__(self, **kwargs: Any) -> Any:
        reply = await self.script(**kwargs)
        if self.armed:
            self.armed = False
            raise RedisConnectionError("Connection closed by server.")
        return reply


@pytest.mark.integration
@pytest.mark.parametrize("room", [10, 2])
async def test_entries_of_a_read_whose_reply_was_lost_come_next(
    log: RedisStreamsLog, room: int
) -> None:
    """CI lost 10 acknowledged events when Redis stopped: the reply of a read that had run
    was lost, the next read asked for new entries only, and the store's position moved past
    the 10 delivered to nobody. They must come before anything newer, once each."""
    member = consumer(log)
    await log.append([(b"k", b"a")])
    assert [m.value for m in await take(member, 1)] == [b"a"]
    await log.append([(b"k", b"%d" % i) for i in range(5)])
    lost = LostReply(member._script(_READ))
    member._scripts[_READ] = lost
    with pytest.raises(LogUnavailable):
        await member.poll(10, 0.2)
    assert not lost.armed  # the script ran: 0-4 are pending under the member, unseen by it
    await log.append([(b"k", b"new")])
    got: list[bytes] = []
    for _ in range(10):
        got.extend(m.value for m in await member.poll(room, 0.2))
        if b"new" in got:
            break
    assert got == [b"0", b"1", b"2", b"3", b"4", b"new"]
    assert await member.poll(10, 0.2) == []
    await member.commit(
        {0: id_to_offset((await log.client().xinfo_stream(log.key))["last-generated-id"]) + 1}
    )
    assert await pending(log) == []
    await member.close()
