"""The one backoff helper: doubling delays up to a cap, jitter within its bounds, fake sleep."""

from __future__ import annotations

from hitstream.backoff import Backoff


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay(10_000) == 3.0  # no overflow, however long the outage


def test_jitter_draws_from_the_upper_part_of_each_delay() -> None:
    low = Backoff(first_s=1.0, max_s=10.0, jitter=0.5, random=lambda: 0.999999)
    high = Backoff(first_s=1.0, max_s=10.0, jitter=0.5, random=lambda: 0.0)
    assert [round(low.delay(n), 3) for n in range(3)] == [0.5, 1.0, 2.0]
    assert [high.delay(n) for n in range(3)] == [1.0, 2.0, 4.0]


async def test_wait_sleeps_through_the_injected_sleep() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backoff = Backoff(first_s=0.2, jitter=0.0, sleep=sleep)
    assert [await backoff.wait(n) for n in range(3)] == [0.2, 0.4, 0.8]
    assert slept == [0.2, 0.4, 0.8]
