"""Token buckets with a fake clock: the numbers follow from rate and burst alone."""

from __future__ import annotations

import math

from hitstream.domain.ratelimit import Buckets, retry_after, take_all


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    ip = Buckets(rate=2, burst=5)
    now = 100.0
    for _ in range(5):
        assert take_all([(ip, {"1.2.3.4": 1})], now) == 0
    wait = take_all([(ip, {"1.2.3.4": 1})], now)
    assert wait == 0.5  # one token at 2/s
    assert retry_after(wait) == 1
    assert take_all([(ip, {"1.2.3.4": 1})], now + 0.49) > 0
    assert take_all([(ip, {"1.2.3.4": 1})], now + 0.5) == 0
    # a long pause refills to the burst, never beyond
    now += 1000
    for _ in range(5):
        assert take_all([(ip, {"1.2.3.4": 1})], now) == 0
    assert take_all([(ip, {"1.2.3.4": 1})], now) > 0


def test_keys_have_their_own_buckets() -> None:
    ip = Buckets(rate=1, burst=1)
    assert take_all([(ip, {"a": 1})], 0) == 0
    assert take_all([(ip, {"b": 1})], 0) == 0
    assert take_all([(ip, {"a": 1})], 0) == 1.0


def test_a_request_takes_from_every_bucket_or_from_none() -> None:
    ip = Buckets(rate=1, burst=10)
    site = Buckets(rate=1, burst=3)
    assert take_all([(ip, {"x": 3}), (site, {"s": 3})], 0) == 0
    # the site is empty: refused, and the IP bucket keeps its 7 tokens
    assert take_all([(ip, {"x": 7}), (site, {"s": 1})], 0) == 1.0
    assert take_all([(ip, {"x": 7})], 0) == 0
    assert take_all([(ip, {"x": 1})], 0) == 1.0


def test_a_batch_larger_than_the_burst_can_never_pass() -> None:
    ip = Buckets(rate=10, burst=5)
    wait = take_all([(ip, {"x": 6})], 0)
    assert math.isinf(wait)
    assert retry_after(wait) == 60


def test_rate_zero_is_no_limit() -> None:
    off = Buckets(rate=0, burst=0)
    assert not off.enabled
    assert take_all([(off, {"x": 10**6})], 0) == 0
    assert len(off) == 0


def test_keys_are_bounded_and_the_least_recent_go_first() -> None:
    ip = Buckets(rate=1, burst=1, max_keys=3)
    for key in "abc":
        take_all([(ip, {key: 1})], 0)
    take_all([(ip, {"a": 0})], 0)  # a is used again
    take_all([(ip, {"d": 1})], 0)  # b, the least recent, goes
    assert len(ip) == 3
    assert take_all([(ip, {"b": 1})], 0) == 0  # forgotten: a full bucket again
    assert take_all([(ip, {"a": 1})], 0) == 1.0  # still remembered: empty
