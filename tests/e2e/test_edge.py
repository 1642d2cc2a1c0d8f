"""The HTTP edge of a real server: slow and hostile clients, proxy trust, logs, headers, docs.

Two servers: ``capped`` holds at most 50 connections and waits 60 s for headers (so only
the cap's eviction can keep it serving a flood of half-sent requests); ``strict`` has
1-second header, body and keep-alive timeouts, trusts 127.0.0.2 as its proxy and logs at
debug level. Loopback has a whole /8: clients bind 127.0.0.2 or 127.0.0.3 to be told apart.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
GB_IP = "81.2.69.142"  # in iptocc's table as GB
CAP = 50
HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: hitstream.test\r\nX-Slow: "


def _server(tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str]) -> Any:
    server = ServerProcess(tmp_path_factory.mktemp(name) / "data", env=env).start()
    yield server
    try:
        server.terminate(timeout=60)
    finally:
        server.kill()


PUBLIC_SITES = '[{"site_id": "a.io", "public": true}, {"site_id": "logs.io", "public": true}]'
"""Declared from the environment (infrastructure as code), public: anyone may watch them."""


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _server(
        tmp_path_factory,
        "capped",
        {
            "HITSTREAM_MAX_CONNECTIONS": str(CAP),
            "HITSTREAM_HEADER_TIMEOUT_S": "60",
            "HITSTREAM_LOG_LEVEL": "info",
            "HITSTREAM_SITES": PUBLIC_SITES,  # dashboards of a public site need no login
        },
    )


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _server(
        tmp_path_factory,
        "strict",
        {
            "HITSTREAM_HEADER_TIMEOUT_S": "1",
            "HITSTREAM_BODY_TIMEOUT_S": "1",
            "HITSTREAM_KEEP_ALIVE_TIMEOUT_S": "1",
            "HITSTREAM_TRUSTED_PROXIES": "127.0.0.2/32",
            "HITSTREAM_SITES": PUBLIC_SITES,
            "HITSTREAM_LOG_LEVEL": "debug",
        },
    )


def raw_socket(server: ServerProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    return sock


def read_all(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """Everything the server sends until it closes (the timeout only bounds a failure)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# the connection cap


def test_a_flood_of_half_sent_requests_past_the_cap_leaves_new_clients_served(
    capped: ServerProcess,
) -> None:
    flood = []
    for _ in range(4 * CAP):
        sock = raw_socket(capped)
        sock.sendall(HALF_SENT)
        flood.append(sock)
    try:
        for _ in range(10):  # each new client finds room at once, 60 s before any timeout
            response = httpx.get(f"{capped.url}/healthz", timeout=10)
            assert response.status_code == 200
        assert sum(closed_by_server(sock) for sock in flood) >= 3 * CAP
        assert metric(capped, "hitstream_http_connections") <= CAP + 1
        evicted = metric(capped, 'hitstream_http_connections_closed_total{reason="evicted"}')
        assert evicted >= 3 * CAP
    finally:
        for sock in flood:
            sock.close()
    assert "connection cap reached" in capped.output()
    assert f"HITSTREAM_MAX_CONNECTIONS={CAP}" in capped.output()


def test_past_the_cap_with_every_connection_busy_a_new_one_gets_503(
    capped: ServerProcess,
) -> None:
    with contextlib.ExitStack() as dashboards:
        for _ in range(CAP):  # live dashboards: busy, never closed to make room
            dashboards.enter_context(
                ws_connect(f"ws://127.0.0.1:{capped.port}/api/v1/live?site_id=a.io")
            )
        late = raw_socket(capped)
        answer = read_all(late)
        late.close()
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b"\r\nretry-after: 1\r\n" in answer.lower()
        assert b'"field":"connection"' in answer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{capped.url}/healthz", timeout=2).status_code == 200:
                break
        time.sleep(0.1)
    assert httpx.get(f"{capped.url}/healthz", timeout=5).status_code == 200


# timeouts and limits


def test_a_half_sent_request_gets_408_and_is_closed(strict: ServerProcess) -> None:
    sock = raw_socket(strict)
    sock.sendall(HALF_SENT)
    answer = read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"field":"headers"' in answer


def test_a_connection_that_sends_nothing_is_closed(strict: ServerProcess) -> None:
    sock = raw_socket(strict)
    assert read_all(sock) == b""
    sock.close()


@pytest.mark.parametrize("path", [b"/api/v1/events", b"/api/v1/sites/a.io/goals"])
def test_a_body_that_never_comes_is_cut_off(strict: ServerProcess, path: bytes) -> None:
    """The ingest route (answered below ASGI) and an app route alike."""
    sock = raw_socket(strict)
    sock.sendall(
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b'content-length: 400\r\n\r\n{"site_id": "a.io",'
    )
    answer = read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]  # told, then closed
    assert b'"field":"body"' in answer


def test_an_idle_keep_alive_connection_is_closed(strict: ServerProcess) -> None:
    sock = raw_socket(strict)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = read_all(sock)  # the answer, then the close once keep-alive runs out
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'{"status":"ok"}')


def test_an_oversized_header_is_refused_with_431(strict: ServerProcess) -> None:
    sock = raw_socket(strict)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65_536 + b"\r\n\r\n")
    answer = read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"field":"headers"' in answer


def test_too_many_headers_are_refused_with_431(strict: ServerProcess) -> None:
    sock = raw_socket(strict)
    many = b"".join(b"X-H%d: 1\r\n" % i for i in range(101))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    answer = read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"more than 100 headers" in answer


def _send_huge_header(sock: socket.socket, size: int) -> int | None:
    """Bytes of header value sent before the server closed the connection (None: all)."""
    chunk = b"a" * 65_536
    sent = 0
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        while sent < size:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return sent
    return None


def test_a_64_mib_header_is_cut_off_long_before_its_end(strict: ServerProcess) -> None:
    """Was accepted whole; now the connection closes after the first 16 KiB are in."""
    sock = raw_socket(strict)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65_536)
    sock.settimeout(15)
    sent = _send_huge_header(sock, 64 * 1024 * 1024)
    sock.close()
    assert sent is not None, "the server took the whole 64 MiB header"
    assert sent < 16 * 1024 * 1024


# proxy trust


def _send(source: str, server: ServerProcess, site: str, forwarded: str) -> None:
    server.add_site(site)
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport) as client:
        response = client.post(
            f"{server.url}/api/v1/events",
            json={"site_id": site, "path": "/"},
            headers={"user-agent": CHROME, "x-forwarded-for": forwarded},
        )
    assert response.status_code == 202, response.text


def _countries(server: ServerProcess, site: str) -> dict[str, int]:
    deadline = time.monotonic() + 15
    while True:
        response = httpx.get(
            f"{server.url}/api/v1/stats/breakdown",
            params={"site_id": site, "period": "day", "property": "country", "metrics": "events"},
            headers=server.headers,
        )
        rows = {row["value"]: row["events"] for row in response.json()["results"]}
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(strict: ServerProcess) -> None:
    """127.0.0.1 is not in HITSTREAM_TRUSTED_PROXIES: its X-Forwarded-For is ignored
    (uvicorn's own proxy handling would have believed it); 127.0.0.2 is, and is believed."""
    untrusted, trusted = f"u{uuid.uuid4().hex[:8]}.io", f"t{uuid.uuid4().hex[:8]}.io"
    _send("127.0.0.1", strict, untrusted, GB_IP)
    _send("127.0.0.2", strict, trusted, GB_IP)
    assert _countries(strict, trusted) == {"GB": 1}
    assert _countries(strict, untrusted) == {"": 1}  # loopback: no country


# logs, headers, docs


def test_no_log_line_holds_a_client_address(strict: ServerProcess) -> None:
    client_ip, forwarded_ip = "127.0.0.3", "198.51.100.23"
    transport = httpx.HTTPTransport(local_address=client_ip)
    with httpx.Client(transport=transport, base_url=strict.url) as client:
        client.post("/api/v1/events", json={"site_id": "logs.io", "path": "/"})
        client.post("/api/v1/events", content=b"{nope", headers={"x-forwarded-for": forwarded_ip})
        client.get("/api/v1/stats/aggregate", params={"site_id": "logs.io", "period": "year"})
        client.get("/nope")
        client.delete("/healthz")
    with httpx.Client(
        transport=httpx.HTTPTransport(local_address="127.0.0.2"), base_url=strict.url
    ) as proxy:
        proxy.post(
            "/api/v1/events",
            json={"site_id": "logs.io", "path": "/"},
            headers={"x-forwarded-for": forwarded_ip, "user-agent": CHROME},
        )
    sock = raw_socket(strict, client_ip)
    sock.sendall(b"NOT HTTP\r\n\r\n")
    read_all(sock)
    sock.close()
    ws_sock = raw_socket(strict, client_ip)
    with ws_connect(
        f"ws://127.0.0.1:{strict.port}/api/v1/live?site_id=logs.io", sock=ws_sock
    ) as ws:
        assert '"snapshot"' in str(ws.recv(timeout=10))
    time.sleep(0.5)  # let the server write the close lines
    log = strict.log_path.read_text()
    assert 'WebSocket /api/v1/live?site_id=logs.io" [accepted]' in log  # the line is there...
    for address in (client_ip, forwarded_ip, "127.0.0.2"):
        assert address not in log  # ...without the address


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/sites", 401),
        ("GET", "/api/v1/stats/aggregate?site_id=a.io&period=year", 400),  # public: checked
        ("GET", "/api/v1/stats/aggregate?site_id=private.io", 401),
        ("GET", "/nope", 404),
        ("DELETE", "/healthz", 405),
        ("GET", "/metrics", 200),
    ],
)
def test_api_answers_carry_security_headers(
    strict: ServerProcess, method: str, path: str, status: int
) -> None:
    response = httpx.request(method, f"{strict.url}{path}")
    assert response.status_code == status
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert "server" not in headers
    if status == 405:
        assert headers["allow"] == "GET"


def test_the_docs_page_loads_nothing_from_another_host(strict: ServerProcess) -> None:
    page = httpx.get(f"{strict.url}/docs")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(links) >= 3
    for link in links:
        assert link.startswith("/docs/assets/"), link  # same origin, no CDN
        assert httpx.get(f"{strict.url}{link}").status_code == 200
    assert "<script>" not in page.text  # no inline script: the CSP allows none


def test_the_docs_page_renders_every_operation_in_a_browser(strict: ServerProcess) -> None:
    """Swagger UI runs under the page's CSP and asks no other host for anything."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    other_hosts: list[str] = []
    console_errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on(
                "request",
                lambda request: (
                    None if request.url.startswith(strict.url) else other_hosts.append(request.url)
                ),
            )
            page.on(
                "console",
                lambda message: (
                    console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.goto(f"{strict.url}/docs")
            page.wait_for_selector(".opblock", timeout=20_000)
            operations = page.locator(".opblock").count()
        finally:
            browser.close()
    spec = httpx.get(f"{strict.url}/openapi.json").json()
    assert operations == sum(len(item) for item in spec["paths"].values())
    assert other_hosts == []
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors


def test_a_connection_answered_before_its_body_ends_is_not_kept_forever(
    strict: ServerProcess,
) -> None:
    """413 goes out as soon as the declared length is seen; the client then sends the body
    anyway and goes quiet. That connection must not outlive the timeouts."""
    size = 2 * 1024 * 1024
    sock = raw_socket(strict)
    sock.sendall(
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {size}\r\n\r\n".encode()
    )
    try:
        sock.settimeout(15)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 413 "), first[:200]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b" " * size)
        rest = read_all(sock)  # ends when the server closes; TimeoutError if it never does
    finally:
        sock.close()
    assert b"HTTP/1.1" not in rest


@pytest.mark.parametrize("role", ["collector", "processor", "web"])
def test_every_role_listens_through_the_same_edge(
    tmp_path_factory: pytest.TempPathFactory, role: str
) -> None:
    server = ServerProcess(
        tmp_path_factory.mktemp(role) / "data",
        command=role,
        env={"HITSTREAM_HEADER_TIMEOUT_S": "1", "HITSTREAM_MAX_HEADERS": "10"},
    ).start()
    try:
        sock = raw_socket(server)
        sock.sendall(HALF_SENT)
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")
        sock.close()
        many = {f"x-h{i}": "1" for i in range(11)}
        assert httpx.get(f"{server.url}/healthz", headers=many).status_code == 431
        health = httpx.get(f"{server.url}/healthz")
        assert health.headers["x-content-type-options"] == "nosniff"
        assert "server" not in health.headers
        assert httpx.get(f"{server.url}/docs").status_code == 200
    finally:
        try:
            server.terminate(timeout=60)
        finally:
            server.kill()
