"""Who the client is: the TCP peer, or behind trusted proxies the right-most untrusted hop."""

from __future__ import annotations

import ipaddress

import pytest
from starlette.requests import Request

from hitstream.web.collect import client_ip

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]


def request(peer: str | None, forwarded: str | None = None) -> Request:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/events",
        "headers": headers,
        "client": None if peer is None else (peer, 50_000),
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),  # no proxy: the peer
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer's header: ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),  # one trusted proxy
        ("10.0.0.2", "198.51.100.1, 10.1.1.1", "198.51.100.1"),  # a chain of trusted proxies
        ("10.0.0.2", "192.0.2.66, 198.51.100.1", "198.51.100.1"),  # left of it: client-made
        ("10.0.0.2", "198.51.100.1 ,  10.9.9.9 ", "198.51.100.1"),  # spaces
        ("10.0.0.2", "10.1.1.1, 10.2.2.2", "10.1.1.1"),  # every hop trusted: the first
        ("10.0.0.2", "", "10.0.0.2"),  # a trusted peer that sent no header
        ("10.0.0.2", "not-an-ip", "10.0.0.2"),  # junk is never believed
        ("10.0.0.2", "198.51.100.1, junk", "10.0.0.2"),  # nor is junk right of the client
        ("2001:db8::1", "2001:db8::2, 2a00::5", "2a00::5"),  # IPv6 alike
        (None, "198.51.100.1", ""),  # no peer at all (a test client): nobody
    ],
)
def test_client_ip(peer: str | None, forwarded: str | None, expected: str) -> None:
    assert client_ip(request(peer, forwarded), PROXIES) == expected


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert client_ip(request("10.0.0.2", "198.51.100.1"), []) == "10.0.0.2"
