"""Visitor hashes, daily salt rotation and time-ordered ids."""

from __future__ import annotations

from hitstream.domain.visitors import DAY_MS, Salts, event_id, rotate, user_hash, visitor_hash

DAY0 = 20_000 * DAY_MS


def test_hash_depends_on_every_input_and_hides_the_ip() -> None:
    base = visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site")
    assert base == visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site")
    others = {
        visitor_hash(b"t" * 16, "203.0.113.9", "UA", "site"),
        visitor_hash(b"s" * 16, "203.0.113.8", "UA", "site"),
        visitor_hash(b"s" * 16, "203.0.113.9", "UA2", "site"),
        visitor_hash(b"s" * 16, "203.0.113.9", "UA", "site2"),
    }
    assert base not in others and len(others) == 4
    assert "203" not in base and len(base) == 16


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
