"""Visitor hashes, daily salt rotation and time-ordered ids."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitstream.domain.visitors import (
    DAY_MS,
    Salts,
    event_id,
    event_ids,
    rotate,
    user_hash,
    visitor_hash,
)

DAY0 = 20_000 * DAY_MS


def test_hash_depends_on_every_input() -> None:
    base = visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site")
    assert base == visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site")
    others = {
        visitor_hash(b"t" * 16, "203.0.113.9", "UA", "site"),
        visitor_hash(b"s" * 16, "203.0.113.8", "UA", "site"),
        visitor_hash(b"s" * 16, "203.0.113.9", "UA2", "site"),
        visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site2"),
    }
    assert base not in others and len(others) == 4


def test_hash_is_the_documented_keyed_blake2b() -> None:
    """README: a visitor is blake2b(daily salt, IP, User-Agent, site), 64 bits, in hex."""
    salt = bytes(range(16))
    expected = hashlib.blake2b(
        b"198.51.100.7\x1fFirefox\x1fshop.example", key=salt, digest_size=8
    ).hexdigest()
    assert visitor_hash(salt, "198.51.100.7", "Firefox", "shop.example") == expected
    assert re.fullmatch(r"[0-9a-f]{16}", expected)


def test_only_the_salt_ties_a_hash_to_an_ip() -> None:
    """With the day's salt, trying every address of the visitor's /24 finds it; once the salt
    is gone (rotated away), no address of the block gives the stored hash."""
    salt, stored = b"a" * 16, visitor_hash(b"a" * 16, "203.0.113.9", "UA", "site")
    block = [f"203.0.113.{n}" for n in range(256)]
    assert [ip for ip in block if visitor_hash(salt, ip, "UA", "site") == stored] == ["203.0.113.9"]
    later = rotate(
        rotate(rotate(None, DAY0, salt), DAY0 + DAY_MS, b"b" * 16), DAY0 + 2 * DAY_MS, b"c" * 16
    )
    assert salt not in (later.current, later.previous)
    for kept in (later.current, later.previous):
        assert not [ip for ip in block if visitor_hash(kept, ip, "UA", "site") == stored]


def test_salts_rotate_daily_and_keep_only_yesterday() -> None:
    first = rotate(None, DAY0 + 5, b"a" * 16)
    assert first == Salts(str(DAY0 // DAY_MS), b"a" * 16, b"a" * 16)
    assert rotate(first, DAY0 + DAY_MS - 1, b"b" * 16) is first
    second = rotate(first, DAY0 + DAY_MS, b"b" * 16)
    assert (second.current, second.previous) == (b"b" * 16, b"a" * 16)
    third = rotate(second, DAY0 + 2 * DAY_MS, b"c" * 16)
    assert b"a" * 16 not in (third.current, third.previous)
    after_gap = rotate(second, DAY0 + 5 * DAY_MS, b"d" * 16)
    assert after_gap.previous == after_gap.current == b"d" * 16


def test_user_hash_is_stable_and_marked() -> None:
    assert user_hash("s", "alice") == user_hash("s", "alice") != user_hash("t", "alice")
    assert user_hash("s", "alice").startswith("u")


def test_event_ids_sort_by_time() -> None:
    ids = [event_id(DAY0 + i, bytes([255 - i] * 10)) for i in range(50)]
    assert ids == sorted(ids)
    assert ids[0][14] == "7"  # UUID version 7


@given(
    now=st.integers(min_value=0, max_value=2**48 - 1),
    randoms=st.lists(st.binary(min_size=10, max_size=10), max_size=8),
)
def test_a_request_s_ids_formatted_together_are_the_ids_formatted_one_by_one(
    now: int, randoms: list[bytes]
) -> None:
    assert event_ids(now, b"".join(randoms)) == [event_id(now, r) for r in randoms]


def test_event_ids_need_ten_bytes_each() -> None:
    with pytest.raises(ValueError, match="10 random bytes per id"):
        event_ids(1, b"x" * 15)
