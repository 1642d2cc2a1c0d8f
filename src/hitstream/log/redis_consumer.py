"""The member of a Redis Streams consumer group that reads while it holds the group's lease.

Why a lease: the store keeps one position per stream, so two members reading one stream at
once would interleave positions, and skipping "below the stored position" would then drop
entries another member had not stored yet. One active member per group keeps positions exact
and a visitor's events in order; standbys take over within ``lease_ms`` of its death. The
active member's reads go through a script that checks the lease first, so a member that lost
it (a long pause) can no longer move the group on. See ``hitstream.log.redis_streams``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hitstream.errors import LogUnavailable
from hitstream.log.base import LogConsumer, LogMessage, PositionLookup

log = logging.getLogger(__name__)
SEQ_BITS = 20
_SEQ_MASK = (1 << SEQ_BITS) - 1

# KEYS: stream, lease. ARGV: member, lease ms, group, count, from. -1: the lease is not ours.
# from: ``>`` (entries never delivered), or an id (this member's pending entries after it:
# what a read whose reply was lost delivered).
_READ = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[1], 'COUNT', ARGV[4],
                  'STREAMS', KEYS[1], ARGV[5])
"""
# KEYS: lease. ARGV: member, lease ms. 1: the lease is ours (taken, or still ours after this
# member gave it up locally, e.g. while Redis was away: no need to wait for it to expire).
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


def id_to_offset(entry_id: bytes | str) -> int:
    """``b"1700000000000-5"`` -> ``1700000000000 * 2**20 + 5`` (order preserving)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    if int(seq) > _SEQ_MASK:
        raise LogUnavailable(f"stream id {text} has a sequence beyond 2**{SEQ_BITS}")
    return (int(ms) << SEQ_BITS) | int(seq)


def offset_to_id(offset: int) -> str:
    """The stream id of an offset; a negative offset (before everything) is ``0-0``."""
    if offset < 0:
        return "0-0"
    return f"{offset >> SEQ_BITS}-{offset & _SEQ_MASK}"


@contextlib.asynccontextmanager
async def guarded(what: str, timeout: float) -> AsyncIterator[None]:
    """Translate the driver's errors (and a stall past ``timeout``) to ``LogUnavailable``."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise LogUnavailable(f"redis {what} failed: {exc!r}") from exc


class StreamHost(Protocol):
    """What a consumer needs from the log that made it (``RedisStreamsLog``): its client,
    the group, trimming, and whether it closed. A protocol, so this module does not import
    the log module that imports it."""

    @property
    def closed(self) -> bool: ...

    def client(self) -> Redis: ...

    async def ensure_group(self, key: str, group: str) -> None: ...

    async def trim(self, key: str) -> None: ...


@dataclass(frozen=True)
class StreamSettings:
    key: str
    lease_ms: int
    op_timeout_s: float


def _message(entry_id: bytes, fields: Mapping[bytes, bytes]) -> LogMessage:
    return LogMessage(0, id_to_offset(entry_id), fields.get(b"k", b""), fields.get(b"v", b""))


class RedisConsumer(LogConsumer):
    def __init__(
        self, log: StreamHost, settings: StreamSettings, group: str, positions: PositionLookup
    ) -> None:
        self._log = log
        self._key = settings.key
        self._lease_key = f"{settings.key}:lease:{group}"
        self._lease_ms = settings.lease_ms
        self._timeout = settings.op_timeout_s
        self._group = group
        self._lookup = positions
        self.member = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._owner = False
        self._generation = 0
        self._backlog: deque[LogMessage] = deque()
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._last_id: bytes | str = "0-0"  # the group's newest delivered id: wait past it
        # the newest entry handed to this member; set while a read's outcome is unknown: the
        # script may have run (the entries are delivered, pending under this member) with
        # its reply lost, so the next reads fetch this member's pending entries after it
        # before any new one (or the store's position would move past them: events lost)
        self._received: bytes | str = "0-0"
        self._unsure = False
        self._keepalive: asyncio.Task[None] | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def generation(self) -> int:
        return self._generation

    def _script(self, source: str) -> Any:
        if source not in self._scripts:
            self._scripts[source] = self._log.client().register_script(source)
        return self._scripts[source]

    async def poll(self, max_messages: int, timeout: float) -> list[LogMessage]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self._owner:
                await self._acquire()
            if self._owner and (batch := await self._read(max_messages)):
                return batch
            left = deadline - loop.time()
            if left <= 0:
                return []
            if self._owner:
                await self._wait(left)
            else:  # a standby: try the lease again soon
                await asyncio.sleep(min(left, 1.0, self._lease_ms / 3000))

    async def _acquire(self) -> None:
        async with guarded("lease", self._timeout):
            taken = await self._script(_TAKE)(
                keys=[self._lease_key], args=[self.member, self._lease_ms]
            )
            if not taken:
                return
        self._owner = True
        self._generation += 1
        self._keepalive = asyncio.create_task(self._renew(), name=f"lease {self._lease_key}")
        try:
            # at every take-over, not once: a Redis that restarted empty has lost the group
            # (and the stream); it is made again here and then set to the store's position
            await self._log.ensure_group(self._key, self._group)
            stored = await self._lookup(0)
            if stored is not None:
                await self._rewind(stored)
            else:
                await self._claim()
        except BaseException:
            await self._release()
            raise

    async def _rewind(self, stored: int) -> None:
        """Put the group at the store's position: entries from it on come again (in order),
        pending ones below it were stored already and are acknowledged unread."""
        redis = self._log.client()
        async with guarded("rewind", self._timeout):
            # a position past the stream's newest id (another Redis, a skewed clock) would
            # make the group skip entries that are yet to come: cap it at the newest
            newest = (await redis.xinfo_stream(self._key))["last-generated-id"]
            last = offset_to_id(min(stored - 1, id_to_offset(newest)))
            await redis.xgroup_setid(self._key, self._group, id=last)
            while rows := await redis.xpending_range(
                self._key, self._group, min="-", max=last, count=1000
            ):
                await redis.xack(self._key, self._group, *[r["message_id"] for r in rows])
        self._last_id = self._received = last
        self._unsure = False

    async def _claim(self) -> None:
        """No store position: take over the pending entries of the member that died."""
        redis = self._log.client()
        start: bytes | str = "0-0"
        async with guarded("claim", self._timeout):
            while True:
                reply = await redis.xautoclaim(
                    self._key, self._group, self.member, 0, start_id=start, count=1000
                )
                start, entries = reply[0], reply[1]
                self._backlog.extend(_message(i, f) for i, f in entries if f is not None)
                if start in (b"0-0", "0-0"):
                    break
            for group in await redis.xinfo_groups(self._key):
                if group["name"] == self._group.encode():
                    self._last_id = self._received = group["last-delivered-id"]
        self._unsure = False

    async def _read(self, max_messages: int) -> list[LogMessage]:
        if self._backlog:
            out = [self._backlog.popleft() for _ in range(min(max_messages, len(self._backlog)))]
            self._unacked.extend((m.offset, offset_to_id(m.offset).encode()) for m in out)
            return out
        again = self._unsure
        try:
            async with guarded("read", self._timeout):
                self._unsure = True  # until the reply is in hand
                reply = await self._script(_READ)(
                    keys=[self._key, self._lease_key],
                    args=[
                        self.member,
                        self._lease_ms,
                        self._group,
                        max_messages,
                        self._received if again else ">",
                    ],
                )
        except LogUnavailable as exc:
            if "NOGROUP" in str(exc.__cause__):  # the group was destroyed under the lease:
                await self._release()  # let go, so the next poll takes over and recreates it
            raise
        if reply == -1:
            await self._lose("another member holds the lease")
            return []
        entries = [(i, flat) for i, flat in reply[0][1] if flat is not None] if reply else []
        # a pending read that filled its count may have left more of the lost reply behind
        self._unsure = again and len(reply[0][1]) >= max_messages if reply else False
        out = []
        for entry_id, flat in entries:
            message = _message(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
            out.append(message)
            self._unacked.append((message.offset, entry_id))
        if reply and reply[0][1]:
            self._received = reply[0][1][-1][0]
            if id_to_offset(self._received) > id_to_offset(self._last_id):
                self._last_id = self._received
        return out

    async def _wait(self, left: float) -> None:
        """Block until the stream holds an entry newer than the group has delivered."""
        async with guarded("wait", left + self._timeout):
            seen: Any = await self._log.client().xread(
                {self._key: self._last_id}, count=1, block=max(1, int(left * 1000))
            )
        if seen:  # never wait for this one again, even if another reader took it
            self._last_id = seen[0][1][-1][0]

    async def commit(self, positions: Mapping[int, int]) -> None:
        upto = positions.get(0)
        if upto is None:
            return
        done = []
        while self._unacked and self._unacked[0][0] < upto:
            done.append(self._unacked.popleft()[1])
        if done:
            async with guarded("ack", self._timeout):
                await self._log.client().xack(self._key, self._group, *done)
        try:
            await self._log.trim(self._key)
        except LogUnavailable as exc:  # housekeeping: the next commit tries again
            log.warning("redis stream trim failed: %s", exc)

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while self._owner:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                async with guarded("lease renewal", self._timeout):
                    held = await self._script(_RENEW)(
                        keys=[self._lease_key], args=[self.member, self._lease_ms]
                    )
            except LogUnavailable as exc:
                if self._log.closed:
                    return
                if loop.time() - renewed < self._lease_ms / 1000:
                    continue
                held = 0
                log.warning("redis lease %s lapsed: %s", self._lease_key, exc)
            if not held:
                await self._lose("the lease lapsed")
                return
            renewed = loop.time()

    async def _lose(self, why: str) -> None:
        log.info("redis consumer %s stops reading %s: %s", self.member, self._key, why)
        self._owner = False
        self._generation += 1
        self._backlog.clear()
        self._unacked.clear()
        task, self._keepalive = self._keepalive, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])

    async def _release(self) -> None:
        with contextlib.suppress(LogUnavailable):
            async with guarded("lease release", self._timeout):
                await self._script(_RELEASE)(keys=[self._lease_key], args=[self.member])
        if self._owner:
            await self._lose("released")

    async def lag(self) -> int | None:
        async with guarded("lag", self._timeout):
            groups = await self._log.client().xinfo_groups(self._key)
        for group in groups:
            if group["name"] == self._group.encode() and group.get("lag") is not None:
                return int(group["lag"]) + len(self._backlog)
        return None

    async def close(self) -> None:
        if self._owner:
            await self._release()
