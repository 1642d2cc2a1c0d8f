"""Visitor hashes, daily salt rotation and time-ordered ids."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitstream.domain.visitors import (
    DAY_MS,
    SALT_BYTES,
    Salts,
    event_id,
    event_ids,
    new_salt,
    rotate,
    user_hash,
    visitor_hash,
)

DAY0 = 20_000 * DAY_MS


def test_hash_depends_on_every_input() -> None:
    base = visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site", day=1)
    assert base == visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site", day=1)
    others = {
        visitor_hash(b"t" * 16, "203.0.113.9", "UA", "site", day=1),
        visitor_hash(b"s" * 16, "203.0.113.8", "UA", "site", day=1),
        visitor_hash(b"s" * 16, "203.0.113.9", "UA2", "site", day=1),
        visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site2", day=1),
    }
    assert base not in others and len(others) == 4


def test_hash_is_the_documented_keyed_blake2b() -> None:
    """README: a visitor is the salt's day (4 hex digits) then blake2b(daily salt, IP,
    User-Agent, site), 64 bits, in hex."""
    salt = bytes(range(SALT_BYTES))
    digest = hashlib.blake2b(b"198.51.100.7\x1fFirefox\x1fshop.example", key=salt, digest_size=8)
    got = visitor_hash(salt, "198.51.100.7", "Firefox", "shop.example", day=20_426)
    assert got == "4fca" + digest.hexdigest()
    assert re.fullmatch(r"[0-9a-f]{20}", got)


def test_a_salt_made_before_the_day_prefix_keeps_its_ids() -> None:
    """A 16-byte salt (made by an earlier version, still in the salts file on upgrade day)
    gives the ids it gave then: the plain 16 hex digits, so nobody's day splits in two."""
    old = bytes(range(16))
    before = hashlib.blake2b(b"198.51.100.7\x1fUA\x1fsite", key=old, digest_size=8).hexdigest()
    assert visitor_hash(old, "198.51.100.7", "UA", "site", day=20_426) == before
    # the day after the upgrade: today's salt is new, yesterday's the old one, whose ids
    # (a visit crossing midnight) are still found
    fresh = new_salt()
    assert len(fresh) == SALT_BYTES and len(old) < SALT_BYTES
    current, previous = Salts("20427", fresh, old).visitor_ids("198.51.100.7", "UA", "site")
    assert previous == before
    assert current.startswith("4fcb") and len(current) == 20


def test_ids_of_a_day_sort_together() -> None:
    """Today's ids under today's salt all sort after yesterday's ids under yesterday's salt
    (the prefix is the day), and ``visitor_ids`` gives each salt's own day."""
    yesterday, today = new_salt(), new_salt()
    salts = Salts("20427", today, yesterday)
    pairs = [salts.visitor_ids(f"203.0.113.{n}", "UA", "site") for n in range(200)]
    assert min(c for c, _ in pairs) > max(p for _, p in pairs)
    assert {c[:4] for c, _ in pairs} == {"4fcb"} and {p[:4] for _, p in pairs} == {"4fca"}
    assert pairs[0][1] == visitor_hash(yesterday, "203.0.113.0", "UA", "site", day=20_426)
    # after a gap there is no yesterday's salt: one id for both
    alone = Salts("20427", today, today).visitor_ids("203.0.113.0", "UA", "site")
    assert alone[0] == alone[1] == pairs[0][0]


def test_only_the_salt_ties_a_hash_to_an_ip() -> None:
    """With the day's salt, trying every address of the visitor's /24 finds it; once the salt
    is gone (rotated away), no address of the block gives the stored hash."""
    salt = b"a" * SALT_BYTES
    stored = visitor_hash(salt, "203.0.113.9", "UA", "site", day=1)
    block = [f"203.0.113.{n}" for n in range(256)]
    found = [ip for ip in block if visitor_hash(salt, ip, "UA", "site", day=1) == stored]
    assert found == ["203.0.113.9"]
    later = rotate(
        rotate(rotate(None, DAY0, salt), DAY0 + DAY_MS, b"b" * 16), DAY0 + 2 * DAY_MS, b"c" * 16
    )
    assert salt not in (later.current, later.previous)
    for kept in (later.current, later.previous):
        assert not [ip for ip in block if visitor_hash(kept, ip, "UA", "site", day=1) == stored]


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
def test_a_request_s_ids_formatted_together_are_the_ids_formatted_one_by_one_ascending(
    now: int, randoms: list[bytes]
) -> None:
    """Ascending, so a batch's events (one timestamp when sent without) keep their order
    wherever events are ordered by (timestamp, event id): a funnel's steps, exports."""
    assert event_ids(now, b"".join(randoms)) == sorted(event_id(now, r) for r in randoms)


def test_event_ids_need_ten_bytes_each() -> None:
    with pytest.raises(ValueError, match="10 random bytes per id"):
        event_ids(1, b"x" * 15)
