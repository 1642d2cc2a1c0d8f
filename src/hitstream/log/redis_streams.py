"""The Redis Streams event log: XADD to append, a consumer group to read, XACK to commit.

URL: ``redis://[:password@]host:6379/0?stream=hitstream:events`` (``rediss://`` for TLS; the
``stream`` parameter names the key, default ``hitstream:events``; every other parameter goes
to redis-py). Dead letters go to ``<stream>:dead``.

Durability: ``append`` returns once Redis has the entries; that they survive a Redis restart
is Redis's persistence setting (``appendonly yes``, ``appendfsync always`` for an fsync per
write). Appends that wait while one is in flight go out together in one script call (group
commit); if it fails, every append in it raises ``LogUnavailable``.

Trimming: none on XADD by default (``maxlen`` bounds the stream approximately, and may then
drop entries nobody has read yet). Instead, at most once a minute after a commit, entries
that every group has been given and acknowledged and that are older than ``retention_s``
are trimmed (approximately: whole internal nodes).

Positions: a stream id ``ms-seq`` becomes the integer ``ms * 2**20 + seq`` on partition 0, so
the store keeps it like a Kafka offset and the order is the same. It holds up to 2**20 - 1
entries per millisecond per stream (more raises ``LogUnavailable``) and ids until year 2248.

One reader at a time: a stream is one ordered partition and the store keeps one position for
it, so a group has one active member, which holds a lease (``claim_idle_ms``, renewed in the
background) and reads only while holding it (checked atomically in a script). Other members
are standbys. When the active member dies its lease lapses and a standby takes over: with a
store position it sets the group there (``XGROUP SETID``): entries at or after it are
delivered again, pending entries below it (stored but never acknowledged: a crash between the
store commit and XACK) are acknowledged unread, so none is counted twice; without one it claims
the dead member's pending entries (XAUTOCLAIM) and reads them first.

A read whose reply is lost (Redis shutting down after running it, a timeout) has delivered
its entries to the member all the same: they are pending under it, and a later ``>`` read
would skip them while the store's position moved past them. So after a read that failed the
member first reads its own pending entries after the newest it received, then new ones.

A Redis that restarts empty (no persistence) has lost the stream, the group and the lease:
the active member finds its lease gone, takes it again, recreates the group and sets it to
the store's position, so what collectors append after the restart is read without a process
restart. What that Redis held and lost is lost (see Durability); a clock that went back
across the restart below the stored position is not handled (new ids would lie below it).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ResponseError

from hitstream.errors import ConfigError, LogUnavailable
from hitstream.log.base import EventLog, LogConsumer, LogMessage, PositionLookup
from hitstream.log.redis_consumer import (
    SEQ_BITS,
    RedisConsumer,
    StreamSettings,
    guarded,
    id_to_offset,
    offset_to_id,
)

DEFAULT_STREAM = "hitstream:events"
_MAX_GROUP = 5000
"""Messages per group-commit call: bounds how long one script holds Redis (a few ms)."""
# KEYS: stream. ARGV: maxlen (0: no trimming), then key, value, key, value ...
_APPEND = """
local cap = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  if cap > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', cap, '*', 'k', ARGV[i], 'v', ARGV[i + 1])
  else
    redis.call('XADD', KEYS[1], '*', 'k', ARGV[i], 'v', ARGV[i + 1])
  end
end
return (#ARGV - 1) / 2
"""


def parse_url(url: str) -> tuple[str, str]:
    """``redis://h:6379/0?stream=s&x=y`` -> (``redis://h:6379/0?x=y``, ``s``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"not a redis:// URL: {url!r}")
    query = parse_qsl(parts.query)
    stream = next((v for k, v in query if k == "stream"), DEFAULT_STREAM)
    rest = urlencode([(k, v) for k, v in query if k != "stream"])
    return urlunsplit(parts._replace(query=rest)), stream


class RedisStreamsLog(EventLog):
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        maxlen: int | None = None,
        retention_s: int | None = 86_400,
        claim_idle_ms: int = 30_000,
        op_timeout_s: float = 5.0,
        max_connections: int = 50,
    ) -> None:
        self.url, self.key = parse_url(url)
        self.dead_key = f"{self.key}:dead"
        self.maxlen = maxlen
        self.retention_s = retention_s
        self.claim_idle_ms = claim_idle_ms
        self.op_timeout_s = op_timeout_s
        self.max_connections = max_connections
        self._redis: Redis | None = None
        self._append_script: Any = None
        self._waiting: deque[tuple[Sequence[tuple[bytes, bytes]], asyncio.Future[None]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._last_trim: dict[str, float] = {}

    @property
    def stream(self) -> str:
        return f"redis:{self.key}"

    async def start(self) -> None:
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=self.op_timeout_s,  # wait this long for a free connection, then fail
            socket_connect_timeout=self.op_timeout_s,
        )
        self._redis = Redis.from_pool(pool)  # owns the pool: aclose() closes it
        self._append_script = self._redis.register_script(_APPEND)
        await self.check()

    async def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            await asyncio.wait([self._writer])
        if self._redis is not None:
            await self._redis.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def client(self) -> Redis:
        if self._closed or self._redis is None:
            raise LogUnavailable("redis log is not started or already closed")
        return self._redis

    async def append(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Group commit: appends waiting while a write is in flight go out together in the
        next one (one script call, atomic per call), so a burst costs few round trips."""
        if not messages:
            return
        self.client()  # fail at once when closed
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((messages, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name="redis-log-append")
        await done

    async def _write_waiting(self) -> None:
        while self._waiting:
            group: list[tuple[Sequence[tuple[bytes, bytes]], asyncio.Future[None]]] = []
            count = 0
            while self._waiting and count < _MAX_GROUP:
                group.append(self._waiting.popleft())
                count += len(group[-1][0])
            args: list[bytes | int] = [self.maxlen or 0]
            for messages, _ in group:
                for key, value in messages:
                    args += (key, value)
            try:
                async with guarded("append", self.op_timeout_s):
                    await self._append_script(keys=[self.key], args=args)
            except LogUnavailable as exc:
                for _, done in group:
                    if not done.done():
                        done.set_exception(LogUnavailable(str(exc)))
                continue
            for _, done in group:
                if not done.done():
                    done.set_result(None)

    async def _add(self, key: str, entries: Sequence[dict[Any, Any]]) -> None:
        if not entries:
            return
        async with guarded("append", self.op_timeout_s), self.client().pipeline() as pipe:
            for fields in entries:
                pipe.xadd(key, fields, maxlen=self.maxlen, approximate=True)
            await pipe.execute()

    async def check(self) -> None:
        async with guarded("ping", min(self.op_timeout_s, 2.0)):
            await self.client().ping()

    def consumer(self, group: str, positions: PositionLookup) -> LogConsumer:
        return RedisConsumer(self, self._settings(self.key), group, positions)

    async def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        """A stream id is its append time in ms (then a sequence): the first entry appended
        at or after ``timestamp_ms`` is at or after offset ``timestamp_ms << SEQ_BITS``."""
        return {0: max(0, timestamp_ms) << SEQ_BITS}

    async def dead_letter(self, messages: Sequence[LogMessage], reason: str) -> None:
        await self._add(
            self.dead_key,
            [
                {b"k": reason.encode(), b"v": m.value, b"partition": b"%d" % m.partition}
                | {b"offset": b"%d" % m.offset}
                for m in messages
            ],
        )

    def dead_letters(self, group: str, positions: PositionLookup) -> LogConsumer:
        return RedisConsumer(self, self._settings(self.dead_key), group, positions)

    def _settings(self, key: str) -> StreamSettings:
        return StreamSettings(key, self.claim_idle_ms, self.op_timeout_s)

    async def trim(self, key: str) -> None:
        """Drop entries every group has been given and acknowledged, once older than the
        retention; at most once a minute per stream (called after commits)."""
        now = time.monotonic()
        if self.retention_s is None or now - self._last_trim.get(key, -1e9) < 60:
            return
        self._last_trim[key] = now
        keep = int(time.time() * 1000 - self.retention_s * 1000) << SEQ_BITS
        redis = self.client()
        async with guarded("trim", self.op_timeout_s):
            for group in await redis.xinfo_groups(key):
                keep = min(keep, id_to_offset(group["last-delivered-id"]) + 1)
                if group["pending"]:
                    summary: dict[str, Any] = await redis.xpending(key, group["name"])
                    keep = min(keep, id_to_offset(summary["min"]))
            await redis.xtrim(key, minid=offset_to_id(keep), approximate=True)

    async def ensure_group(self, key: str, group: str) -> None:
        """The group, created at the start of the stream (a new group misses nothing)."""
        try:
            async with guarded("group create", self.op_timeout_s):
                await self.client().xgroup_create(key, group, id="0", mkstream=True)
        except LogUnavailable as exc:
            if isinstance(exc.__cause__, ResponseError) and "BUSYGROUP" in str(exc.__cause__):
                return
            raise
