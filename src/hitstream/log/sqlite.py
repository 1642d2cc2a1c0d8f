"""The embedded event log: one SQLite file in WAL mode, with group commit.

Durability: ``append`` returns only after the transaction holding the messages has committed
with ``synchronous=FULL`` (fsync of the WAL), so an acknowledged event survives a SIGKILL of
the process and a power cut. Throughput comes from group commit: one writer thread takes every
append waiting at that moment and commits them together, so a burst of requests costs one
fsync, not one each. The appends of one event-loop turn form one group with ONE
``asyncio.Future`` that every appender awaits (shielded: a caller going away does not cancel
the others'), handed to the writer once; the writer settles every group of a commit with one
``call_soon_threadsafe`` (no ``concurrent.futures.Future`` and wake-up per request).
Under load the writer waits a little for company (decision 0044): when appends arrived while
it committed, its next commit first waits ``COMMIT_WAIT_S`` for more, since a commit's fsync
costs the same for one event or a hundred; a lone appender never waits.

Storage (decision 0043): a commit writes its messages as **frames**, one table row holding up
to ``MAX_FRAME`` consecutive messages (a msgpack array of ``[key, value]``), keyed by the offset
of its first message. Offsets are still one integer per message, contiguous and never reused
(the ``head`` row keeps the next one), so consumer positions mean what they meant; a consumer
may start inside a frame and a poll may end inside one. A row per message cost SQLite ~6 µs of
CPU per event on these machines, a row per frame ~1.7 (``benchmarks/RESULTS.md``, session 16).
A log written before frames keeps its ``messages`` table (offsets = rowids below the first
frame's), read before the frames until compaction empties it.

One partition (0). Consumed frames are deleted once every group has committed past them and
they are older than the retention. Dead letters (messages the processor could not decode) go to
a second file beside it, ``<name>.dead.sqlite3``, kept until an operator replays or deletes
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from hitstream.errors import LogUnavailable
from hitstream.log.base import EventLog, LogConsumer, LogMessage, PositionLookup, Positions

_SCHEMA = """
CREATE TABLE IF NOT EXISTS frames (
    first INTEGER PRIMARY KEY,
    count INTEGER NOT NULL,
    body BLOB NOT NULL,
    appended_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commits (
    grp TEXT PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
"""
MAX_FRAME: Final = 1024
"""Messages in one frame at most: a consumer starting at offset ``o`` finds its frame among
those whose first offset is above ``o - MAX_FRAME`` (a range of the table's key), and a read
decodes at most this many messages it does not return. Never lower it: frames already written
may hold this many."""
COMMIT_WAIT_S: Final = 0.001
"""How long a commit waits for more appends when appends arrived during the previous one
(decision 0044): at 16 connections of single events it cut the collector's CPU a request by
~14 %, and ``serve``'s under a paced load by ~8 % (``benchmarks/RESULTS.md``, session 17),
for at most a millisecond more latency."""
_PACK: Final = msgspec.msgpack.Encoder()
_UNPACK: Final = msgspec.msgpack.Decoder(list[tuple[bytes, bytes]])


def _frames(
    rows: list[tuple[bytes, bytes]], first: int, now: int
) -> list[tuple[int, int, bytes, int]]:
    """``rows`` cut into frames from offset ``first``: (first, count, body, appended_at)."""
    return [
        (first + s, len(part), _PACK.encode(part), now)
        for s in range(0, len(rows), MAX_FRAME)
        for part in (rows[s : s + MAX_FRAME],)
    ]


def _has_legacy(conn: sqlite3.Connection) -> bool:
    """Whether the file holds the ``messages`` table of a log written before frames."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'"
    ).fetchone()
    return row is not None


def _legacy_end(conn: sqlite3.Connection) -> int:
    """One past the last offset a pre-frames ``messages`` table ever gave (0: none)."""
    if not _has_legacy(conn):
        return 0
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    return int(row[0]) + 1 if row else 0


def _open_head(conn: sqlite3.Connection) -> None:
    """Create the head row once: the next offset, after a legacy log's last one if any."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM head").fetchone() is None:
            following = _legacy_end(conn) or 1
            conn.execute("INSERT INTO head (id, next_offset) VALUES (0, ?)", (following,))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


class _Group:
    """The appends of one event-loop turn: their messages and the one future they await."""

    __slots__ = ("done", "first", "loop", "rows")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.rows: list[tuple[bytes, bytes]] = []
        self.done: asyncio.Future[None] = loop.create_future()
        self.first = 0
        """The offset its first row took (set by the writer before ``done``)."""


def _settle(groups: list[_Group], error: BaseException | None) -> None:
    """On the groups' loop: wake every appender of ``groups``."""
    for group in groups:
        if group.done.done():
            continue
        if error is None:
            group.done.set_result(None)
        else:
            group.done.set_exception(error)
            group.done.exception()  # retrieved: no warning when every appender went away


def gather(
    pending: queue.SimpleQueue[_Group | None], first: _Group, wait_s: float
) -> tuple[list[_Group], bool]:
    """The groups of one commit, ``first`` and every group queued behind it, and whether the
    log is closing (a ``None`` was taken). With ``wait_s`` > 0, first sleep that long: the
    groups arriving meanwhile join (a sleep, not a wait on the queue, which would wake the
    writer and take the GIL from the event loop for every group)."""
    if wait_s > 0:
        time.sleep(wait_s)
    groups = [first]
    while True:
        try:
            item = pending.get_nowait()
        except queue.Empty:
            return groups, False
        if item is None:
            return groups, True
        groups.append(item)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA page_size=16384")  # a new file only: frames span fewer pages (0055)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SQLiteLog(EventLog):
    name = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        retention_s: int = 86_400,
        dead_letter: bool = True,
        commit_wait_s: float = COMMIT_WAIT_S,
    ) -> None:
        """``commit_wait_s``: how long a commit waits for company under load (0: never)."""
        self.path = Path(path)
        self.commit_wait_s = commit_wait_s
        self._dead = (
            SQLiteLog(self.path.with_suffix(".dead.sqlite3"), retention_s=10**9, dead_letter=False)
            if dead_letter
            else None
        )
        self.retention_s = retention_s
        self._queue: queue.SimpleQueue[_Group | None] = queue.SimpleQueue()
        self._open: _Group | None = None
        """The group this loop turn's appends join; handed to the writer at the turn's end."""
        self._writer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._appended = threading.Condition()
        self._closed = False
        self.commits = 0
        """Transactions committed by the writer (fewer than appends: group commit at work)."""

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = _connect(self.path)
            self._conn.executescript(_SCHEMA)
            _open_head(self._conn)
        except sqlite3.Error as exc:
            raise LogUnavailable(f"cannot open event log {self.path}: {exc}") from exc
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-log", daemon=True)
        self._writer.start()
        if self._dead is not None:
            await self._dead.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        if self._conn is not None:
            self._conn.close()
        with self._appended:
            self._appended.notify_all()
        if self._dead is not None:
            await self._dead.close()

    async def append(self, messages: Sequence[tuple[bytes, bytes]]) -> Positions:
        if self._closed or self._writer is None:
            raise LogUnavailable("event log is closed")
        if not messages:
            return []
        group = self._open
        if group is None:
            loop = asyncio.get_running_loop()
            group = self._open = _Group(loop)
            loop.call_soon(self._submit, group)
        elif group.loop is not asyncio.get_running_loop():  # pragma: no cover - two loops
            raise LogUnavailable("event log appended from two event loops at once")
        start = len(group.rows)
        group.rows.extend(messages)
        await asyncio.shield(group.done)
        return [(0, group.first + start + i) for i in range(len(messages))]

    def _submit(self, group: _Group) -> None:
        """End of the loop turn: the group goes to the writer; later appends start another."""
        if self._open is group:
            self._open = None
        if self._closed:
            _settle([group], LogUnavailable("event log is closed"))
            return
        self._queue.put(group)

    def _write_loop(self) -> None:
        assert self._conn is not None
        conn = self._conn
        stop = False
        busy = False  # appends arrived during the last commit: the next one waits for more
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            # one commit for everything that queued while we waited (and, busy, a bit more)
            groups, stop = gather(self._queue, first, self.commit_wait_s if busy else 0.0)
            now = int(time.time() * 1000)
            rows = [row for group in groups for row in group.rows]
            error: BaseException | None = None
            try:
                # inside BEGIN IMMEDIATE no other writer (process) moves the head
                conn.execute("BEGIN IMMEDIATE")
                head = int(conn.execute("SELECT next_offset FROM head").fetchone()[0])
                conn.executemany(
                    "INSERT INTO frames (first, count, body, appended_at) VALUES (?, ?, ?, ?)",
                    _frames(rows, head, now),
                )
                conn.execute("UPDATE head SET next_offset = ?", (head + len(rows),))
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                error = LogUnavailable(f"event log append failed: {exc}")
            else:
                self.commits += 1
                offset = head
                for group in groups:  # in the order their rows were inserted
                    group.first = offset
                    offset += len(group.rows)
            # appends came while it committed: more will. Read before the wake-up: an
            # appender woken by it may append again at once, and that one did not come
            # during the commit (a lone client must never wait)
            busy = not self._queue.empty()
            self._wake(groups, error)
            if error is None:
                with self._appended:
                    self._appended.notify_all()

    @staticmethod
    def _wake(groups: list[_Group], error: BaseException | None) -> None:
        """One cross-thread call per loop (in practice one) for every group of a commit."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Group]] = {}
        for group in groups:
            by_loop.setdefault(group.loop, []).append(group)
        for loop, mine in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, mine, error)

    async def check(self) -> None:
        if self._closed or self._writer is None or not self._writer.is_alive():
            raise LogUnavailable("event log writer is not running")

    def consumer(self, group: str, positions: PositionLookup) -> LogConsumer:
        return _SQLiteConsumer(self, group, positions)

    def _dead_log(self) -> SQLiteLog:
        if self._dead is None:
            raise LogUnavailable("this log keeps no dead letters")
        return self._dead

    async def dead_letter(self, messages: Sequence[LogMessage], reason: str) -> None:
        await self._dead_log().append([(reason.encode(), m.value) for m in messages])

    def dead_letters(self, group: str, positions: PositionLookup) -> LogConsumer:
        return self._dead_log().consumer(group, positions)

    async def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        def lookup() -> int:
            conn = _connect(self.path)
            try:
                if _has_legacy(conn):  # its offsets are below every frame's
                    row = conn.execute(
                        "SELECT MIN(offset) FROM messages WHERE appended_at >= ?", (timestamp_ms,)
                    ).fetchone()
                    if row and row[0] is not None:
                        return int(row[0])
                row = conn.execute(
                    "SELECT MIN(first) FROM frames WHERE appended_at >= ?", (timestamp_ms,)
                ).fetchone()
                if row and row[0] is not None:
                    return int(row[0])
                return int(conn.execute("SELECT next_offset FROM head").fetchone()[0])
            finally:
                conn.close()

        try:
            return {0: await asyncio.to_thread(lookup)}
        except sqlite3.Error as exc:
            raise LogUnavailable(f"event log lookup failed: {exc}") from exc

    def wait_for_append(self, timeout: float) -> None:
        with self._appended:
            self._appended.wait(timeout)


class _SQLiteConsumer(LogConsumer):
    def __init__(self, log: SQLiteLog, group: str, positions: PositionLookup) -> None:
        self._log = log
        self._group = group
        self._lookup = positions
        self._next: int | None = None
        self._conn = _connect(log.path)
        self._lock = threading.Lock()
        self._last_compact = 0.0
        self._legacy_end = _legacy_end(self._conn)
        """One past the last offset of a pre-frames ``messages`` table (0: none)."""

    async def _position(self) -> int:
        if self._next is None:
            stored = await self._lookup(0)
            if stored is None:
                row = await asyncio.to_thread(self._query_one, self._group)
                stored = row if row is not None else 0
            self._next = stored
        return self._next

    def _query_one(self, group: str) -> int | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT next_offset FROM commits WHERE grp = ?", (group,)
            ).fetchone()
        return int(row[0]) if row else None

    def _read(self, start: int, limit: int) -> list[LogMessage]:
        with self._lock:
            if start < self._legacy_end:
                rows = self._conn.execute(
                    "SELECT offset, key, value FROM messages WHERE offset >= ? "
                    "ORDER BY offset LIMIT ?",
                    (start, limit),
                ).fetchall()
                if rows:
                    return [LogMessage(0, int(o), bytes(k), bytes(v)) for o, k, v in rows]
            out: list[LogMessage] = []
            cursor = self._conn.execute(  # the frame holding ``start`` and those after it
                "SELECT first, body FROM frames WHERE first > ? AND first + count > ? "
                "ORDER BY first",
                (start - MAX_FRAME, start),
            )
            try:
                for first, body in cursor:  # stepped lazily: stops once ``limit`` are read
                    frame = _UNPACK.decode(body)
                    skip = max(0, start - first)
                    for i in range(skip, min(len(frame), skip + limit - len(out))):
                        key, value = frame[i]
                        out.append(LogMessage(0, first + i, key, value))
                    if len(out) >= limit:
                        break
            finally:
                cursor.close()
        return out

    def _read_waiting(self, start: int, limit: int, timeout: float) -> list[LogMessage]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self._read(start, limit)
            left = deadline - time.monotonic()
            if rows or left <= 0 or self._log._closed:
                return rows
            # woken by this process's writer; the short cap also sees other processes' appends
            self._log.wait_for_append(min(left, 0.05))

    async def poll(self, max_messages: int, timeout: float) -> list[LogMessage]:
        start = await self._position()
        try:
            rows = await asyncio.to_thread(self._read_waiting, start, max_messages, timeout)
        except sqlite3.Error as exc:
            raise LogUnavailable(f"event log read failed: {exc}") from exc
        if rows:
            self._next = rows[-1].offset + 1
        return rows

    async def commit(self, positions: Mapping[int, int]) -> None:
        offset = positions.get(0)
        if offset is None:
            return
        try:
            await asyncio.to_thread(self._commit, offset)
        except sqlite3.Error as exc:
            raise LogUnavailable(f"event log commit failed: {exc}") from exc

    def _commit(self, offset: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO commits (grp, next_offset) VALUES (?, ?) "
                "ON CONFLICT (grp) DO UPDATE SET next_offset = excluded.next_offset",
                (self._group, offset),
            )
            now = time.monotonic()
            if now - self._last_compact > 60:
                self._last_compact = now
                cutoff = int(time.time() * 1000) - self._log.retention_s * 1000
                self._conn.execute(
                    "DELETE FROM frames WHERE first < (SELECT MIN(next_offset) FROM commits) "
                    "AND first + count <= (SELECT MIN(next_offset) FROM commits) "
                    "AND appended_at < ?",
                    (cutoff,),
                )
                if self._legacy_end:
                    self._conn.execute(
                        "DELETE FROM messages WHERE offset < "
                        "(SELECT MIN(next_offset) FROM commits) AND appended_at < ?",
                        (cutoff,),
                    )

    async def lag(self) -> int | None:
        start = await self._position()

        def count() -> int:  # offsets are contiguous from the oldest kept: a difference
            with self._lock:
                head = int(self._conn.execute("SELECT next_offset FROM head").fetchone()[0])
                (oldest,) = self._conn.execute("SELECT MIN(first) FROM frames").fetchone()
                if self._legacy_end:
                    (old,) = self._conn.execute("SELECT MIN(offset) FROM messages").fetchone()
                    oldest = old if old is not None else oldest
            return max(0, head - max(start, head if oldest is None else int(oldest)))

        return await asyncio.to_thread(count)

    async def close(self) -> None:
        with self._lock:
            self._conn.close()
