"""The store port over a local Unix socket: a server that lends a store, a client that is one.

DuckDB lets one process hold its file. The process that owns the store (``hitstream serve``)
serves every operation of the store port, registry included, on ``<data_dir>/control.sock``
(mode 0600: only the owner's user may connect), and ``SocketStore`` is a ``Store`` that calls
them there. The CLI uses it to manage sites, users and keys while ``serve`` runs; the same
pair lets another local process (a processor of its own, say) reach an embedded store.

Frames are a 4-byte big-endian length and a msgpack document: ``{"id", "op", "args"}`` one
way, ``{"id", "ok"}`` or ``{"id", "error", ...}`` back. Arguments and answers are converted
by the port's own type hints (``msgspec.convert``), so the server accepts nothing but the
port's operations with the port's types, and errors come back as hitstream's: ``QueryError``,
``Conflict``, ``NotFound``, ``PositionConflict`` as they were, anything else as
``StoreUnavailable``. Calls on one client connection are serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import struct
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final

import msgspec

from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.funnels import Funnel
from hitstream.domain.goals import Goal
from hitstream.domain.sites import ApiKey, Login, LoginToken, SharedLink, Site, User
from hitstream.domain.stats import BreakdownRow, Filter, StatsQuery, TimeseriesPoint
from hitstream.errors import (
    Conflict,
    HitstreamError,
    NotFound,
    PositionConflict,
    QueryError,
    StoreRefused,
    StoreUnavailable,
)
from hitstream.stores.base import Store, WriteBatch
from hitstream.stores.batch import StatsBatch, StatsCall

log = logging.getLogger(__name__)
MAX_FRAME: Final = 256 * 1024 * 1024
_LENGTH: Final = struct.Struct(">I")
_ENCODE = msgspec.msgpack.Encoder()
_DECODE = msgspec.msgpack.Decoder()
_ERRORS: Final[dict[str, Callable[[dict[str, Any]], HitstreamError]]] = {
    "QueryError": lambda e: QueryError(e["field"], e["reason"]),
    "Conflict": lambda e: Conflict(e["field"], e["reason"]),
    "NotFound": lambda e: NotFound(e["field"], e["reason"]),
    "PositionConflict": lambda e: PositionConflict(e["message"]),
    "StoreRefused": lambda e: StoreRefused(*_what_and_detail(e["message"])),
}


def _what_and_detail(message: str) -> tuple[str, str]:
    """A ``StoreRefused``'s text (``write: <the driver's words>``) split back."""
    what, _, detail = message.partition(": ")
    return (what, detail) if detail else ("store", message)


@cache
def operations() -> frozenset[str]:
    """What the server lends: every public coroutine of the store port (registry included)."""
    return frozenset(
        name
        for name, member in inspect.getmembers(Store)
        if not name.startswith("_")
        and inspect.iscoroutinefunction(member)
        and name not in ("start", "close")
    )


@cache
def _hints(op: str) -> tuple[list[tuple[str, Any]], Any]:
    function = getattr(Store, op)
    hints = typing.get_type_hints(function)
    names = [p for p in inspect.signature(function).parameters if p != "self"]
    return [(n, hints.get(n, Any)) for n in names], hints.get("return", Any)


async def _read(reader: asyncio.StreamReader) -> Any:
    size = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is over {MAX_FRAME}")
    return _DECODE.decode(await reader.readexactly(size))


def _write(writer: asyncio.StreamWriter, document: object) -> None:
    payload = _ENCODE.encode(document)
    writer.write(_LENGTH.pack(len(payload)) + payload)


def _error(exc: BaseException) -> dict[str, Any]:
    kind = type(exc).__name__
    if kind in _ERRORS:
        return {
            "error": kind,
            "field": getattr(exc, "field", ""),
            "reason": getattr(exc, "reason", ""),
            "message": str(exc),
        }
    return {"error": "StoreUnavailable", "message": str(exc)}


class StoreServer:
    """Serves ``store`` on a Unix socket at ``path`` (``start``/``close``)."""

    def __init__(self, store: Store, path: Path) -> None:
        self.store = store
        self.path = path
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a process that died: we own the store now
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        server, self._server = self._server, None
        for writer in list(self._clients):  # a server's close leaves its clients open
            writer.close()
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                try:
                    request = await _read(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                _write(writer, await self._answer(request))
                await writer.drain()
        except Exception as exc:  # a broken client: drop it, never the server
            log.warning("control socket client dropped: %r", exc)
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _answer(self, request: Any) -> dict[str, Any]:
        ident = request.get("id") if isinstance(request, dict) else None
        op = request.get("op") if isinstance(request, dict) else None
        if not isinstance(op, str) or op not in operations():
            return {"id": ident, "error": "StoreUnavailable", "message": f"no operation {op!r}"}
        params, _ = _hints(op)
        raw = request.get("args") or []
        try:
            if not isinstance(raw, list) or len(raw) > len(params):
                raise QueryError("args", f"{op} takes at most {len(params)} arguments")
            args = [msgspec.convert(a, hint) for a, (_, hint) in zip(raw, params, strict=False)]
            value = await getattr(self.store, op)(*args)
        except msgspec.ValidationError as exc:
            return {"id": ident, **_error(QueryError("args", str(exc)))}
        except Exception as exc:
            return {"id": ident, **_error(exc)}
        return {"id": ident, "ok": value}


class SocketStore(Store):
    """A store reached through a ``StoreServer``'s socket."""

    name = "socket"

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._next = 0
        self._started = False

    async def start(self) -> None:
        await self._connect()
        self._started = True

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connection, opened again if the last one broke (the lending process was
        restarted: ``serve``'s processor process comes back after a SIGKILL)."""
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path)), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"cannot reach the store at {self.path}: {exc}") from exc
        self._reader, self._writer = reader, writer
        return reader, writer

    def _drop(self) -> None:
        """Forget a connection that broke, or that an interrupted call left with an answer
        nobody will read (the next call would read it as its own): the next call reconnects."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        self._started = False
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _call(self, op: str, *args: object, timeout: float | None = None) -> Any:
        """``timeout``: how long the answer may take (default: the store's)."""
        wait = self.timeout if timeout is None else timeout
        async with self._lock:
            if not self._started:
                raise StoreUnavailable("the socket store is not started")
            reader, writer = await self._connect()
            self._next += 1
            ident = self._next
            try:
                payload = {"id": ident, "op": op, "args": list(args)}
                frame = _ENCODE.encode(payload)
            except (OverflowError, TypeError, msgspec.EncodeError) as exc:  # nothing was sent
                raise StoreRefused(op, f"a value cannot be sent: {exc}") from exc
            try:
                writer.write(_LENGTH.pack(len(frame)) + frame)
                await writer.drain()
                while True:  # answers are in order; one of an interrupted call is skipped
                    answer = await asyncio.wait_for(_read(reader), wait)
                    if answer.get("id") == ident:
                        break
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                self._drop()
                raise StoreUnavailable(f"the store at {self.path} went away: {exc!r}") from exc
            except BaseException:  # cancelled mid-call: its answer is still on the way
                self._drop()
                raise
        if "error" in answer:
            make = _ERRORS.get(answer["error"])
            if make is not None:
                raise make(answer)
            raise StoreUnavailable(answer.get("message", "the store failed"))
        return msgspec.convert(answer.get("ok"), _hints(op)[1])

    # -- the store port -------------------------------------------------------------------

    async def migrate(self) -> list[str]:
        result: list[str] = await self._call("migrate")
        return result

    async def check(self) -> None:
        await self._call("check")

    async def positions(self, stream: str) -> dict[int, int]:
        result: dict[int, int] = await self._call("positions", stream)
        return result

    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        result: set[str] = await self._call("known_event_ids", list(event_ids))
        return result

    async def write(self, batch: WriteBatch) -> None:
        await self._call("write", batch)

    async def open_sessions(self, since_ms: int) -> list[Session]:
        result: list[Session] = await self._call("open_sessions", since_ms)
        return result

    async def visits_of(
        self, site_visitors: Sequence[tuple[str, str]], since_ms: int
    ) -> list[Session]:
        result: list[Session] = await self._call("visits_of", list(site_visitors), since_ms)
        return result

    async def newest_visit_ms(self) -> int | None:
        result: int | None = await self._call("newest_visit_ms")
        return result

    async def aggregate(self, query: StatsQuery) -> dict[str, float]:
        result: dict[str, float] = await self._call("aggregate", query)
        return result

    async def timeseries(self, query: StatsQuery) -> list[TimeseriesPoint]:
        result: list[TimeseriesPoint] = await self._call("timeseries", query)
        return result

    async def breakdown(self, query: StatsQuery) -> list[BreakdownRow]:
        result: list[BreakdownRow] = await self._call("breakdown", query)
        return result

    async def events_page(
        self, site_id: str, start_ms: int, end_ms: int, after: tuple[int, str] | None, limit: int
    ) -> list[ProcessedEvent]:
        result: list[ProcessedEvent] = await self._call(
            "events_page", site_id, start_ms, end_ms, after, limit
        )
        return result

    async def latest_events(
        self, site_id: str, start_ms: int, end_ms: int, limit: int
    ) -> list[ProcessedEvent]:
        result: list[ProcessedEvent] = await self._call(
            "latest_events", site_id, start_ms, end_ms, limit
        )
        return result

    async def funnel(
        self, query: StatsQuery, steps: tuple[Filter, ...], window_ms: int | None
    ) -> list[int]:
        result: list[int] = await self._call("funnel", query, steps, window_ms)
        return result

    async def data_version(self, site_id: str) -> int:
        result: int = await self._call("data_version", site_id)
        return result

    async def sites(self) -> list[str]:
        result: list[str] = await self._call("sites")
        return result

    async def prop_keys(self, site_id: str) -> list[str]:
        result: list[str] = await self._call("prop_keys", site_id)
        return result

    async def drop_counts(self, site_id: str | None = None) -> dict[str, int]:
        result: dict[str, int] = await self._call("drop_counts", site_id)
        return result

    async def count_events(self, site_id: str | None = None) -> int:
        result: int = await self._call("count_events", site_id)
        return result

    async def rebuild_rollups(self) -> int | None:
        # minutes for millions of events (the lending store runs it as one job)
        result: int | None = await self._call("rebuild_rollups", timeout=24 * 3600.0)
        return result

    async def lead(self, name: str) -> bool:
        result: bool = await self._call("lead", name)
        return result

    async def delete_before(self, cutoff_ms: int) -> int:
        result: int = await self._call("delete_before", cutoff_ms)
        return result

    async def delete_site_before(self, site_id: str, cutoff_ms: int) -> int:
        result: int = await self._call("delete_site_before", site_id, cutoff_ms)
        return result

    async def forget_user(self, site_id: str, user_id: str, at_ms: int) -> int:
        result: int = await self._call("forget_user", site_id, user_id, at_ms)
        return result

    # -- the registry ---------------------------------------------------------------------

    async def registry_version(self) -> int:
        result: int = await self._call("registry_version")
        return result

    async def registered_sites(self) -> list[Site]:
        result: list[Site] = await self._call("registered_sites")
        return result

    async def get_site(self, site_id: str) -> Site | None:
        result: Site | None = await self._call("get_site", site_id)
        return result

    async def add_site(self, site: Site) -> None:
        await self._call("add_site", site)

    async def update_site(self, site: Site) -> bool:
        result: bool = await self._call("update_site", site)
        return result

    async def remove_site(self, site_id: str) -> bool:
        result: bool = await self._call("remove_site", site_id)
        return result

    async def users(self) -> list[User]:
        result: list[User] = await self._call("users")
        return result

    async def get_user(self, email: str) -> tuple[User, str] | None:
        result: tuple[User, str] | None = await self._call("get_user", email)
        return result

    async def add_user(self, user: User, password_hash: str) -> None:
        await self._call("add_user", user, password_hash)

    async def update_user(self, user: User, password_hash: str | None = None) -> bool:
        result: bool = await self._call("update_user", user, password_hash)
        return result

    async def remove_user(self, email: str) -> bool:
        result: bool = await self._call("remove_user", email)
        return result

    async def add_key(self, key: ApiKey) -> None:
        await self._call("add_key", key)

    async def keys(self, site_id: str | None = None) -> list[ApiKey]:
        result: list[ApiKey] = await self._call("keys", site_id)
        return result

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        result: ApiKey | None = await self._call("key_by_hash", key_hash)
        return result

    async def revoke_key(self, key_id: str) -> bool:
        result: bool = await self._call("revoke_key", key_id)
        return result

    async def touch_key(self, key_id: str, at_ms: int) -> None:
        await self._call("touch_key", key_id, at_ms)

    async def add_login(self, login: Login) -> None:
        await self._call("add_login", login)

    async def login_by_hash(self, token_hash: str, now_ms: int) -> Login | None:
        result: Login | None = await self._call("login_by_hash", token_hash, now_ms)
        return result

    async def remove_login(self, token_hash: str) -> None:
        await self._call("remove_login", token_hash)

    async def add_link(self, link: SharedLink) -> None:
        await self._call("add_link", link)

    async def links(self, site_id: str) -> list[SharedLink]:
        result: list[SharedLink] = await self._call("links", site_id)
        return result

    async def link_by_hash(self, token_hash: str) -> SharedLink | None:
        result: SharedLink | None = await self._call("link_by_hash", token_hash)
        return result

    async def remove_link(self, link_id: str) -> bool:
        result: bool = await self._call("remove_link", link_id)
        return result

    async def put_login_token(self, token: LoginToken) -> None:
        await self._call("put_login_token", token)

    async def use_login_token(self, token_hash: str, now_ms: int) -> LoginToken | None:
        result: LoginToken | None = await self._call("use_login_token", token_hash, now_ms)
        return result

    async def forgotten(self) -> dict[tuple[str, str], int]:
        result: dict[tuple[str, str], int] = await self._call("forgotten")
        return result

    async def add_refusals(self, counts: Mapping[tuple[str, str], int]) -> None:
        await self._call("add_refusals", dict(counts))

    async def refusals(self, site_id: str | None = None) -> dict[str, int]:
        result: dict[str, int] = await self._call("refusals", site_id)
        return result

    async def goals(self, site_id: str) -> list[Goal]:
        result: list[Goal] = await self._call("goals", site_id)
        return result

    async def add_goal(self, site_id: str, goal: Goal) -> None:
        await self._call("add_goal", site_id, goal)

    async def remove_goal(self, site_id: str, name: str) -> bool:
        result: bool = await self._call("remove_goal", site_id, name)
        return result

    async def funnels(self, site_id: str) -> list[Funnel]:
        result: list[Funnel] = await self._call("funnels", site_id)
        return result

    async def add_funnel(self, site_id: str, funnel: Funnel) -> None:
        await self._call("add_funnel", site_id, funnel)

    async def remove_funnel(self, site_id: str, name: str) -> bool:
        result: bool = await self._call("remove_funnel", site_id, name)
        return result

    async def stats_batch(self, site_id: str, calls: list[StatsCall]) -> StatsBatch:
        # one round trip for a live update's ~17 queries
        result: StatsBatch = await self._call("stats_batch", site_id, list(calls))
        return result
