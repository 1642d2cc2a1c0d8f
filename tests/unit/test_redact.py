"""The HTTP server's log lines lose every IP address; hitstream's own lines are kept whole."""

from __future__ import annotations

import logging

import pytest

from hitstream.web.redact import RedactAddresses


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        (
            '%s - "WebSocket %s" [accepted]',
            ("203.0.113.9:51234", "/api/v1/live?site_id=a.io"),
            '- - "WebSocket /api/v1/live?site_id=a.io" [accepted]',
        ),
        ("%s:%d - HTTP connection made", ("2001:db8::7", 4431), "- - HTTP connection made"),
        (
            "%sWebSocket connection lost",
            ("[2001:db8::7]:4431 - ",),
            "- - WebSocket connection lost",
        ),
        ("client ::ffff:198.51.100.4 gone", (), "client - gone"),
        ("at 12:34:56, version 1.2.3, ratio 3:2", (), "at 12:34:56, version 1.2.3, ratio 3:2"),
    ],
)
def test_server_records_lose_addresses(msg: str, args: tuple[object, ...], expected: str) -> None:
    rec = record("uvicorn.error", msg, *args)
    assert RedactAddresses().filter(rec) is True
    assert rec.getMessage() == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/api/v1/live?site_id=a.io&auth=hs_share_Zk9x-1_2&period=day",
            "/api/v1/live?site_id=a.io&auth=-&period=day",
        ),
        ("/api/v1/live?AUTH=hs_share_abc", "/api/v1/live?AUTH=-"),
        ("/setup?token=s3cr3t#top", "/setup?token=-#top"),
        ("/x?api_key=hs_live_1&author=ann&monkey=1", "/x?api_key=-&author=ann&monkey=1"),
    ],
)
def test_server_records_lose_credentials_in_query_strings(path: str, expected: str) -> None:
    """A shared link's dashboard puts its token in the WebSocket URL, which uvicorn logs at
    INFO for every connection: the token must not reach the log."""
    rec = record("uvicorn.error", '%s - "WebSocket %s" [accepted]', "203.0.113.9:51234", path)
    assert RedactAddresses().filter(rec) is True
    assert rec.getMessage() == f'- - "WebSocket {expected}" [accepted]'


def test_the_servers_own_listening_address_is_kept() -> None:
    """uvicorn's banner names where it listens, not a client: redacted it read ``http://-``."""
    rec = record("uvicorn.error", "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)")
    rec.args = ("http", "127.0.0.1", 8080)
    assert RedactAddresses().filter(rec) is True
    assert rec.getMessage() == "Uvicorn running on http://127.0.0.1:8080 (Press CTRL+C to quit)"
    # the same words from a client's record are no pass: only the template is trusted
    rec = record("uvicorn.error", "%s said Uvicorn running on", "203.0.113.9:51234")
    assert RedactAddresses().filter(rec) is True
    assert rec.getMessage() == "- said Uvicorn running on"


def test_websockets_library_records_too() -> None:
    rec = record("websockets.server", "connection from %s", "192.0.2.1")
    RedactAddresses().filter(rec)
    assert rec.getMessage() == "connection from -"


def test_hitstream_records_are_left_alone() -> None:
    rec = record("hitstream.bootstrap", "store at %s down", "10.0.0.5:5432")
    RedactAddresses().filter(rec)
    assert rec.getMessage() == "store at 10.0.0.5:5432 down"


@pytest.mark.parametrize(
    ("name", "msg", "args", "expected"),
    [
        (  # uvicorn and websockets log every handshake header at debug
            "uvicorn.error",
            "< %s: %s",
            ("cookie", "hitstream_session=hs_login_Yjmo8d7a6s5"),
            "< cookie: -",
        ),
        (
            "websockets.server",
            "< %s: %s",
            ("Authorization", "Bearer hs_key_rMdC0123abc"),
            "< Authorization: -",
        ),
        (
            "uvicorn.error",
            "< %s: %s",
            ("sec-websocket-protocol", "hitstream, hs_key_rMdC0123abc"),
            "< sec-websocket-protocol: -",
        ),
        (
            "uvicorn.error",
            "< %s: %s",
            ("user-agent", "Firefox/128.0"),
            "< user-agent: Firefox/128.0",
        ),
        (  # httpx names a request's whole URL: a webhook's secret path, query and user info
            "httpx",
            'HTTP Request: %s %s "%s"',
            ("POST", "https://bot:pw@hooks.example.com/services/T0/B0/SECRET?t=QTOKEN", "200 OK"),
            'HTTP Request: POST https://hooks.example.com/… "200 OK"',
        ),
        ("httpcore.http11", "connect to %s", ("http://10.1.2.3:8099/x",), "connect to http://-/…"),
        (
            "uvicorn.error",
            "token %s refused",
            ("hs_share_AbCdEf012345",),
            "token hs_share_- refused",
        ),
    ],
)
def test_server_and_client_records_lose_credentials(
    name: str, msg: str, args: tuple[object, ...], expected: str
) -> None:
    rec = record(name, msg, *args)
    assert RedactAddresses().filter(rec) is True
    assert rec.getMessage() == expected


def test_the_http_client_logs_warnings_only_once_logging_is_set_up() -> None:
    """At info, httpx logs a line per request with its whole URL; the CLI's set-up leaves it
    warnings (and hitstream's own info lines)."""
    import logging as stdlib_logging

    from hitstream.cli import _logging

    root = stdlib_logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        root.handlers[:] = []  # as in a fresh process: basicConfig sets the level
        _logging("info")
        assert not stdlib_logging.getLogger("httpx").isEnabledFor(stdlib_logging.INFO)
        assert not stdlib_logging.getLogger("httpcore").isEnabledFor(stdlib_logging.INFO)
        assert stdlib_logging.getLogger("httpx").isEnabledFor(stdlib_logging.WARNING)
        assert stdlib_logging.getLogger("hitstream.alerts").isEnabledFor(stdlib_logging.INFO)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        for name in ("httpx", "httpcore"):
            stdlib_logging.getLogger(name).setLevel(stdlib_logging.NOTSET)
