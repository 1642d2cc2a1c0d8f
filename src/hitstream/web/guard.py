"""The HTTP edge's guard: uvicorn's httptools protocol with the limits uvicorn lacks.

uvicorn times out idle keep-alive connections, but nothing else: a client that connects and
sends half a request (slowloris) keeps its connection, and so its file descriptor, forever;
the httptools parser buffers a header of any size; and every accepted connection is kept,
so 20,000 half-sent requests use up every descriptor and lock everyone out. This protocol
adds, for each connection:

- a **header timeout**: the request line and headers must be complete within
  ``header_timeout_s`` of the connection opening or of the request's first byte (408, then
  closed; a connection that sent nothing is just closed);
- a **body timeout**: a declared body must arrive within ``body_timeout_s`` (408 when no
  answer was started, then closed);
- **head limits**: at most ``max_header_bytes`` of request line and headers, at most
  ``max_headers`` headers (431, then closed), counted as bytes arrive, not after;
- a **connection cap** shared by the server: past ``max_connections`` open connections
  (HTTP and WebSocket) a new one first closes the connection that has waited longest without
  a request in flight (idle keep-alive, or headers still coming: what nginx calls reusable),
  and only when none is left is it refused (503 + ``Retry-After``, then closed). Reaching the
  cap is logged, at most once per ``LOG_EVERY_S``, with what was closed meanwhile.

A legitimate client sends its headers in one packet, so it is never the longest waiting: a
flood of half-sent requests evicts itself, and new clients are served. Invalid HTTP gets the
project's JSON error instead of uvicorn's text, and is not logged per request (a flood of
garbage must not flood the log either). No line here holds a client address.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, cast

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from hitstream.web.headers import DEFAULTS as SECURITY_HEADERS
from hitstream.web.ingest import INGEST, wanted_headers

log = logging.getLogger("hitstream.edge")
LOG_EVERY_S: Final = 10.0
RETRY_AFTER_S: Final = 1
INGEST_PATH: Final = INGEST.encode()
_INTERNAL_ERROR: Final = b'{"error":{"field":"server","reason":"internal error"}}'
QUICK_MAX_BODY: Final = 65_536
"""The largest declared body the quick path reads itself (uvicorn's read buffer's high-water
mark: below it reading never pauses); a larger one goes through ASGI."""


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_connections: int = 10_000
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 16_384
    max_headers: int = 100


class _HeadTooLarge(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ignore(*_: object) -> None:
    return None


class Edge:
    """What every connection of one server shares: the limits, the reusable connections
    (oldest first), the cap's log throttle and the callbacks that count refusals."""

    def __init__(
        self,
        limits: EdgeLimits,
        *,
        on_reject: Callable[[int, str], None] = _ignore,
        on_close: Callable[[str], None] = _ignore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.on_reject = on_reject
        self.on_close = on_close
        self.clock = clock
        self.reusable: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self._last_log = -math.inf
        self._evicted = 0
        self._refused = 0

    def make_room(self, open_now: int) -> bool:
        """Close the longest-waiting reusable connection; False when none is left."""
        victim = next(iter(self.reusable), None)
        if victim is not None:
            self.reusable.pop(victim)
            victim.transport.close()
            self._evicted += 1
            self.on_close("evicted")
        else:
            self._refused += 1
            self.on_close("refused")
        self._log_cap(open_now)
        return victim is not None

    def _log_cap(self, open_now: int) -> None:
        now = self.clock()
        if now - self._last_log < LOG_EVERY_S:
            return
        self._last_log = now
        log.warning(
            "connection cap reached: %d connections open (HITSTREAM_MAX_CONNECTIONS=%d); "
            "since the last report %d waiting connection(s) closed to make room, "
            "%d new connection(s) refused with 503",
            open_now,
            self.limits.max_connections,
            self._evicted,
            self._refused,
        )
        self._evicted = self._refused = 0


def _error_response(
    status: int, field: str, reason: str, default_headers: list[tuple[bytes, bytes]]
) -> bytes:
    body = f'{{"error":{{"field":"{field}","reason":"{reason}"}}}}'.encode()
    lines = [STATUS_LINE[status]]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines += [f"{name}: {value}\r\n".encode() for name, value in SECURITY_HEADERS]
    if status == 503:
        lines.append(f"retry-after: {RETRY_AFTER_S}\r\n".encode())
    lines += [
        b"content-type: application/json\r\n",
        f"content-length: {len(body)}\r\n".encode(),
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, guarded; ``protocol_class(edge)`` binds it to a server."""

    edge: ClassVar[Edge]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False
        self._in_head = True
        self._head_raw = 0
        self._head_size = 0
        self._header_count = 0
        self._deadline: asyncio.TimerHandle | None = None

    # connection lifetime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        edge = self.edge
        open_now = len(self.connections)
        if open_now >= edge.limits.max_connections and not edge.make_room(open_now):
            self._refused = True
            self.transport = transport
            transport.write(
                _error_response(
                    503,
                    "connection",
                    "the server holds as many connections as it may; retry shortly",
                    self.server_state.default_headers,
                )
            )
            transport.close()
            edge.on_reject(503, "connection cap")
            return
        super().connection_made(transport)
        self._await_head()
        self._arm(edge.limits.header_timeout_s, "header")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm()
        self.edge.reusable.pop(self, None)
        super().connection_lost(exc)

    # reading

    def data_received(self, data: bytes) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_raw += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, "headers", exc.__context__.reason, "headers too large")
            else:
                self._refuse(400, "request", "is not valid HTTP/1.1", "invalid http")
            return
        except httptools.HttpParserError:
            self._refuse(400, "request", "is not valid HTTP/1.1", "invalid http")
            return
        if self._in_head and self._head_raw > self.edge.limits.max_header_bytes:
            self._refuse(431, "headers", self._too_large(), "headers too large")

    def _too_large(self) -> str:
        return f"request line and headers exceed {self.edge.limits.max_header_bytes} bytes"

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive request: its head is timed from here
            self._arm(self.edge.limits.header_timeout_s, "header")

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.edge.limits.max_header_bytes:
            raise _HeadTooLarge(self._too_large())
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._header_count > self.edge.limits.max_headers:
            raise _HeadTooLarge(f"more than {self.edge.limits.max_headers} headers")
        if self._head_size > self.edge.limits.max_header_bytes:
            raise _HeadTooLarge(self._too_large())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        self.edge.reusable.pop(self, None)
        upgrade = self.parser.should_upgrade()
        lean = None if upgrade else self._quick_route()
        if lean is not None:
            self._begin_quick(lean)
        else:
            super().on_headers_complete()
        if not upgrade and self._has_body():
            self._arm(self.edge.limits.body_timeout_s, "body")

    # the quick path: POST /api/v1/events answered here, below ASGI (decision 0047)

    def _quick_route(self) -> QuickIngest | None:
        """The ingest endpoint, when this request is one the quick path answers: ``POST``
        to exactly its path, a declared body that fits in one read, nothing to negotiate
        (no ``Expect``, no chunked body), no request of this connection still answering
        (a pipelined one goes to ASGI, queued behind it). Anything else: None."""
        lean = getattr(self.app, "lean", None)
        if (
            lean is None
            or self.expect_100_continue
            or self.parser.get_method() != b"POST"
            or self.url.partition(b"?")[0] != INGEST_PATH
            or (self.cycle is not None and not self.cycle.response_complete)
            or self.limit_concurrency is not None
            or self.root_path
        ):
            return None
        declared = None
        for name, value in self.headers:
            if name == b"content-length":
                if declared is not None or not value.isdigit():
                    return None
                declared = int(value)
            elif name == b"transfer-encoding":
                return None
        if declared is None or declared > QUICK_MAX_BODY:
            return None
        return cast("QuickIngest", lean)

    def _begin_quick(self, lean: QuickIngest) -> None:
        http_version = self.parser.get_http_version()
        path, _, query = self.url.partition(b"?")
        scope = self.scope
        scope["method"] = "POST"
        scope["path"] = INGEST
        scope["raw_path"] = path
        scope["query_string"] = query
        if http_version != "1.1":
            scope["http_version"] = http_version
        self.cycle = _Quick(  # type: ignore[assignment]
            lean, http_version != "1.0" and self.parser.should_keep_alive()
        )

    def on_body(self, body: bytes) -> None:
        cycle: object = self.cycle
        if isinstance(cycle, _Quick):
            if not cycle.response_complete:
                cycle.body += body  # at most QUICK_MAX_BODY: reading never pauses for it
            return
        super().on_body(body)

    def _answer_quick(self, cycle: _Quick) -> None:
        task = self.loop.create_task(self._quick(cycle, bytes(cycle.body), self.scope))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _quick(self, cycle: _Quick, body: bytes, scope: Any) -> None:
        """Answer as ``LeanIngest`` does, then write the response in one piece."""
        client = self.client
        peer = str(client[0]) if client else ""
        try:
            status, payload, headers = await cycle.lean.respond(
                scope, wanted_headers(scope["headers"]), peer, body
            )
        except Exception:  # respond answers its own failures: this is a bug of the path
            log.exception("the quick path's answer to POST %s failed", INGEST)
            status, payload = 500, _INTERNAL_ERROR
            headers = [(b"content-type", b"application/json")]
            headers.append((b"content-length", str(len(payload)).encode()))
            cycle.keep_alive = False
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()
        if cycle.disconnected or self.transport.is_closing():
            cycle.response_complete = True
            return
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content += (name, b": ", value, b"\r\n")
        for name, value in headers:
            content += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", payload)
        self.transport.write(b"".join(content))
        cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return True
        return False

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_raw = self._head_size = self._header_count = 0
        cycle: object = self.cycle
        if isinstance(cycle, _Quick):
            cycle.more_body = False
            if not cycle.response_complete:
                self._answer_quick(cycle)
            return
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:
            # answered before its body ended (a 413): uvicorn's keep-alive timer was
            # cancelled by the body's bytes, so this idle connection needs ours
            self._await_head()
            self._arm(self.edge.limits.header_timeout_s, "header")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline and self._in_head:
            self._await_head()

    # the guard's own state

    def _await_head(self) -> None:
        """No request in flight: this connection may be closed to make room."""
        self.edge.reusable[self] = None
        self.edge.reusable.move_to_end(self)

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if phase == "header" and self._head_raw:
            self._refuse(408, "headers", "were not complete in time", "header timeout")
            return
        if phase == "body" and not self._answered():
            seconds = f"{self.edge.limits.body_timeout_s:g}"
            self._refuse(408, "body", f"did not arrive within {seconds} s", "body timeout")
            return
        self.edge.on_close(f"{phase} timeout" if phase == "body" else "idle")
        self.transport.close()  # a body cut short reaches the app as a disconnect

    def _answered(self) -> bool:
        """Whether the request in progress has its answer on the way already (a 413 sent on
        the declared length, or an app that answers before reading the body)."""
        cycle: object = getattr(self, "cycle", None)
        if isinstance(cycle, _Quick):
            return cycle.response_complete
        return bool(getattr(cycle, "response_started", True))

    def _refuse(self, status: int, field: str, reason: str, label: str) -> None:
        """Answer ``status`` with the JSON error body and close (nothing reached the app)."""
        self._disarm()
        self.edge.reusable.pop(self, None)
        self.edge.on_reject(status, label)
        if not self.transport.is_closing():
            self.transport.write(
                _error_response(status, field, reason, self.server_state.default_headers)
            )
            self.transport.close()


class QuickIngest(Protocol):
    """What the quick path needs of the ingest endpoint (``web/ingest.LeanIngest``)."""

    async def respond(
        self, scope: Any, headers: Mapping[str, str], peer: str, body: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]: ...


class _NoEvent:
    """uvicorn's protocol wakes a cycle's reader on its own events: a quick request has
    none (its body is read by the protocol, not by an app)."""

    @staticmethod
    def set() -> None:
        return None


class _Quick:
    """Stands where uvicorn keeps a request's ``RequestResponseCycle`` (``self.cycle``),
    with the attributes the protocol reads and writes there: for a request the quick path
    answers."""

    __slots__ = ("body", "disconnected", "keep_alive", "lean", "more_body", "response_complete")
    message_event: ClassVar = _NoEvent()

    def __init__(self, lean: QuickIngest, keep_alive: bool) -> None:
        self.lean = lean
        self.body = bytearray()
        self.more_body = True
        self.keep_alive = keep_alive
        """False for a ``Connection: close`` request and after ``shutdown``: closed once
        answered."""
        self.response_complete = False
        self.disconnected = False


def protocol_class(edge: Edge) -> type[GuardedProtocol]:
    """A protocol class bound to ``edge`` (one per server: the cap is per process)."""
    return type("EdgeProtocol", (GuardedProtocol,), {"edge": edge})
