"""Login throttling with a fake clock."""

from __future__ import annotations

from hitstream.domain.throttle import Throttle


def test_failures_past_the_free_ones_double_the_wait() -> None:
    t = Throttle(free=2, first_s=1.0, cap_s=8.0)
    keys = ["acct:a@x.io", "ip:1.2.3.4"]
    now = 10.0
    for _ in range(2):
        assert t.wait(keys, now) == 0
        t.failed(keys, now)
    assert t.wait(keys, now) == 1.0  # third failure onwards: 1, 2, 4, 8, 8 ...
    expected = [2.0, 4.0, 8.0, 8.0]
    for wait in expected:
        now += 100
        t.failed(keys, now)
        assert t.wait(keys, now) == wait
    assert t.wait(keys, now + 3) == 5.0


def test_the_account_and_the_address_are_throttled_apart() -> None:
    t = Throttle(free=1, first_s=1.0)
    t.failed(["acct:a", "ip:1"], 0)
    assert t.wait(["acct:a", "ip:2"], 0) == 1.0  # same account, other address
    assert t.wait(["acct:b", "ip:1"], 0) == 1.0  # other account, same address
    assert t.wait(["acct:b", "ip:2"], 0) == 0


def test_a_success_clears_the_record() -> None:
    t = Throttle(free=1)
    t.failed(["acct:a"], 0)
    t.succeeded(["acct:a"])
    assert t.wait(["acct:a"], 0) == 0


def test_an_idle_record_is_forgotten_only_when_asked_and_only_after_the_quiet_while() -> None:
    t = Throttle(free=1, first_s=1.0)
    for at in (0.0, 1.0, 3.0):
        t.failed(["ip:1"], at)
    t.expire("ip:1", 900.0, 900.0)  # 897 s since the last failure: kept
    assert t.wait(["ip:1"], 900.0) == 0.0  # its 4 s wait is over, but it still counts ...
    t.failed(["ip:1"], 900.0)
    assert t.wait(["ip:1"], 900.0) == 8.0  # ... as the next failure's doubling shows
    t.expire("ip:1", 1801.0, 900.0)  # 901 s of quiet: forgotten
    t.failed(["ip:1"], 1801.0)
    assert t.wait(["ip:1"], 1801.0) == 1.0  # the first wait again
