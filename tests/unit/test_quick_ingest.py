"""The edge's quick path (decision 0047): ``POST /api/v1/events`` answered by the guarded
httptools protocol itself, below ASGI, over real loopback sockets and a real uvicorn server.

The app here is a stand-in with both doors: ``lean.respond`` (what the quick path calls) and
an ASGI ``__call__`` (everything else), each answering with which door it was, so every test
sees which path a request took. What the ingest endpoint answers is tested elsewhere
(``tests/e2e/test_edge.py``, the collector's tests); here: which requests take the quick path,
and that HTTP/1.1 (keep-alive, pipelining, ``Connection: close``, HTTP/1.0, a client that
leaves, a graceful shutdown) holds on it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import uvicorn

from hitstream.web.guard import QUICK_MAX_BODY, Edge, EdgeLimits, protocol_class
from tests.server import free_port

PATH = "/api/v1/events"


class Lean:
    """The quick door: records what it was given; waits on ``hold`` while it is set."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.fail = False

    async def respond(
        self, scope: Any, headers: Mapping[str, str], peer: str, body: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        self.calls.append(
            {"headers": dict(headers), "peer": peer, "body": body, "query": scope["query_string"]}
        )
        await asyncio.to_thread(self.hold.wait)
        if self.fail:
            raise RuntimeError("a bug")
        payload = json.dumps({"via": "quick", "size": len(body)}).encode()
        headers_out = [(b"content-type", b"application/json")]
        return 202, payload, [*headers_out, (b"content-length", str(len(payload)).encode())]


class App:
    """Both doors; ``lean`` None makes it an app without the quick path (a web-only role)."""

    def __init__(self) -> None:
        self.lean: Lean | None = Lean()
        self.asgi: list[tuple[str, str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.asgi.append((scope["method"], scope["path"], body))
        payload = json.dumps({"via": "asgi", "size": len(body)}).encode()
        headers = [(b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class Running:
    def __init__(self, app: App, server: uvicorn.Server, port: int) -> None:
        self.app, self.server, self.port = app, server, port

    @property
    def lean(self) -> Lean:
        assert self.app.lean is not None
        return self.app.lean

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return sock


@pytest.fixture
def running() -> Iterator[Running]:
    app = App()
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol_class(Edge(EdgeLimits())),
        lifespan="off",
        proxy_headers=False,  # as hitstream's server: the app unwrapped
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    yield Running(app, server, port)
    app.lean.hold.set() if app.lean is not None else None
    server.should_exit = True
    thread.join(15)


def request(
    path: str = PATH,
    body: bytes = b'{"site_id":"a.io"}',
    *,
    method: str = "POST",
    extra: str = "",
    version: str = "1.1",
) -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: x\r\nUser-Agent: Firefox\r\n{extra}"
    if "Transfer-Encoding" not in extra:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def responses(
    sock: socket.socket, count: int, timeout: float = 5.0
) -> list[tuple[int, dict[str, str], dict[str, Any]]]:
    """Read ``count`` final responses (each with a Content-Length) off ``sock``."""
    sock.settimeout(timeout)
    data = b""
    found: list[tuple[int, dict[str, str], dict[str, Any]]] = []
    while len(found) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(found)} of {count} responses: {data!r}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if lines[0].split()[1].startswith("1"):  # 100 Continue: an interim answer, no body
            continue
        size = int(headers["content-length"])
        while len(data) < size:
            chunk = sock.recv(65536)
            assert chunk, "closed inside a body"
            data += chunk
        body, data = data[:size], data[size:]
        found.append((int(lines[0].split()[1]), headers, json.loads(body)))
    return found


def closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_a_small_post_to_the_ingest_path_is_answered_below_asgi(running: Running) -> None:
    body = b'[{"site_id":"a.io","path":"/"}]' * 3
    with running.connect() as sock:
        sock.sendall(request(PATH + "?from=test", body, extra="Origin: https://a.io\r\n"))
        [(status, headers, answer)] = responses(sock, 1)
        assert (status, answer) == (202, {"via": "quick", "size": len(body)})
        assert headers["content-type"] == "application/json" and "date" in headers
        # keep-alive: the same connection serves the next one the same way
        sock.sendall(request())
        assert responses(sock, 1)[0][2]["via"] == "quick"
    [call, _] = running.lean.calls
    assert call["body"] == body and call["peer"] == "127.0.0.1" and call["query"] == b"from=test"
    assert call["headers"]["user-agent"] == "Firefox"
    assert call["headers"]["origin"] == "https://a.io"
    assert running.app.asgi == []


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (request(method="PUT"), "another method"),
        (request("/api/v1/eventsx"), "another path"),
        (request(PATH + "/"), "another path"),
        (request(body=b"x" * (QUICK_MAX_BODY + 1)), "a body past one read"),
        (request(extra="Transfer-Encoding: chunked\r\n", body=chunked(b"{}")), "a chunked body"),
        (request(extra="Expect: 100-continue\r\n"), "a client waiting for 100 Continue"),
    ],
)
def test_anything_else_goes_through_asgi(running: Running, raw: bytes, why: str) -> None:
    with running.connect() as sock:
        sock.sendall(raw)
        [(status, _, answer)] = responses(sock, 1)
    assert (status, answer["via"]) == (200, "asgi"), why
    assert running.lean.calls == [], why


def test_an_app_without_the_ingest_endpoint_gets_every_request(running: Running) -> None:
    running.app.lean = None  # the web role alone: no collector in this process
    with running.connect() as sock:
        sock.sendall(request())
        assert responses(sock, 1)[0][2]["via"] == "asgi"


def test_pipelined_requests_are_answered_in_order(running: Running) -> None:
    """While a quick answer waits (for the log's commit), the requests behind it on the same
    connection queue in uvicorn's pipeline and are answered after it, in order."""
    running.lean.hold.clear()
    bodies = [b'{"n":1}', b'{"n":22}', b'{"n":333}']
    with running.connect() as sock:
        sock.sendall(b"".join(request(body=b) for b in bodies))
        time.sleep(0.3)
        assert len(running.lean.calls) == 1 and running.app.asgi == []
        running.lean.hold.set()
        found = responses(sock, 3)
    assert [(a["via"], a["size"]) for _, _, a in found] == [
        ("quick", 7),
        ("asgi", 8),
        ("asgi", 9),
    ]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (request(extra="Connection: close\r\n"), "Connection: close"),
        (request(version="1.0"), "HTTP/1.0"),
    ],
)
def test_a_request_that_ends_its_connection_is_answered_then_closed(
    running: Running, raw: bytes, why: str
) -> None:
    with running.connect() as sock:
        sock.sendall(raw)
        [(status, headers, answer)] = responses(sock, 1)
        assert (status, answer["via"]) == (202, "quick"), why
        assert headers.get("connection") == "close", why
        assert closed(sock), why


def test_a_client_that_leaves_before_its_answer_breaks_nothing(running: Running) -> None:
    running.lean.hold.clear()
    sock = running.connect()
    sock.sendall(request())
    deadline = time.monotonic() + 5
    while not running.lean.calls:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sock.close()
    time.sleep(0.2)
    running.lean.hold.set()  # answered to nobody: nothing written, nothing raised
    with running.connect() as again:
        again.sendall(request())
        assert responses(again, 1)[0][0] == 202


def test_a_graceful_shutdown_waits_for_an_answer_in_flight(running: Running) -> None:
    """SIGTERM drains: the server stops accepting, and a request already read is still
    answered (its events are in the log once it says 202) before the connection closes."""
    running.lean.hold.clear()
    with running.connect() as sock:
        sock.sendall(request())
        deadline = time.monotonic() + 5
        while not running.lean.calls:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        running.server.should_exit = True
        time.sleep(0.5)
        running.lean.hold.set()
        [(status, headers, answer)] = responses(sock, 1)
        assert (status, answer["via"]) == (202, "quick")
        assert headers.get("connection") == "close"
        assert closed(sock)


def test_a_bug_in_the_answer_is_a_json_500_and_the_server_goes_on(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    running.lean.fail = True
    with running.connect() as sock:
        sock.sendall(request())
        [(status, headers, answer)] = responses(sock, 1)
        assert (status, answer) == (500, {"error": {"field": "server", "reason": "internal error"}})
        assert headers["content-type"] == "application/json" and closed(sock)
    assert "the quick path's answer" in caplog.text
    running.lean.fail = False
    with running.connect() as sock:
        sock.sendall(request())
        assert responses(sock, 1)[0][0] == 202
