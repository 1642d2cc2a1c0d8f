"""Compressed bodies: inflated up to the body limit whatever the ratio, or refused by name."""

from __future__ import annotations

import gzip
import zlib

import pytest

from hitstream.web.encoding import EncodingProblem, inflate

CAP = 1024 * 1024
BODY = b'{"site_id": "a.io", "path": "/pricing"}'


def _raw_deflate(data: bytes) -> bytes:
    stream = zlib.compressobj(wbits=-15)
    return stream.compress(data) + stream.flush()


@pytest.mark.parametrize(
    ("coding", "wire"),
    [
        ("", BODY),
        ("identity", BODY),
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("GZIP", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),  # zlib-wrapped, as RFC 9110 says
        ("deflate", _raw_deflate(BODY)),  # what some clients send instead
    ],
)
def test_supported_codings_give_the_plain_body(coding: str, wire: bytes) -> None:
    assert inflate(wire, coding, CAP) == BODY


def test_several_gzip_members_are_one_body() -> None:
    assert inflate(gzip.compress(b"[1,") + gzip.compress(b"2]"), "gzip", CAP) == b"[1,2]"


def test_a_bomb_stops_at_the_cap() -> None:
    bomb = gzip.compress(b"\x00" * (50 * CAP))  # ~50 KB on the wire, 50 MiB inflated
    assert len(bomb) < CAP
    with pytest.raises(EncodingProblem) as caught:
        inflate(bomb, "gzip", CAP)
    assert (caught.value.status, caught.value.field) == (413, "body")


def test_exactly_the_cap_is_fine() -> None:
    assert len(inflate(gzip.compress(b"a" * CAP), "gzip", CAP)) == CAP


@pytest.mark.parametrize(
    ("coding", "wire", "status", "field"),
    [
        ("gzip", b"not gzip at all", 400, "body"),
        ("gzip", gzip.compress(BODY)[:-6], 400, "body"),  # truncated
        ("gzip", gzip.compress(BODY) + b"junk", 400, "body"),
        ("deflate", b"\x78\x9c garbage", 400, "body"),
        ("br", BODY, 415, "content-encoding"),
        ("zstd", BODY, 415, "content-encoding"),
        ("gzip, gzip", gzip.compress(gzip.compress(BODY)), 415, "content-encoding"),
    ],
)
def test_refusals_name_status_and_field(coding: str, wire: bytes, status: int, field: str) -> None:
    with pytest.raises(EncodingProblem) as caught:
        inflate(wire, coding, CAP)
    assert (caught.value.status, caught.value.field) == (status, field)
    assert caught.value.reason
