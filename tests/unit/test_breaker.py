"""The circuit breaker: confirmed outages fail fast, recovery closes it, one probe at a time."""

from __future__ import annotations

import asyncio

import pytest

from hitstream.breaker import Breaker
from hitstream.errors import StoreUnavailable, public_reason


def is_open(breaker: Breaker) -> bool:
    """Read afresh (mypy would keep the narrowing of an earlier assert)."""
    return breaker.is_open


class Service:
    """A dependency the probe reaches; ``up`` says whether it answers."""

    def __init__(self) -> None:
        self.up = True
        self.probes = 0
        self.recoveries = 0
        self.concurrent = 0
        self.most_concurrent = 0

    async def probe(self) -> None:
        self.probes += 1
        self.concurrent += 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            await asyncio.sleep(0)
            if not self.up:
                raise ConnectionRefusedError("connection refused")
        finally:
            self.concurrent -= 1

    async def recover(self) -> None:
        self.recoveries += 1


async def settle(breaker: Breaker) -> None:
    """Let the probe task run until it has nothing left to do (or has opened)."""
    for _ in range(200):
        await asyncio.sleep(0.005)
        task = breaker._task
        if task is None or task.done() or breaker.is_open:
            return


async def test_a_confirmed_outage_opens_and_fails_fast_with_the_adapters_error() -> None:
    service = Service()
    breaker = Breaker("db", service.probe, error=StoreUnavailable, interval_s=0.01)
    service.up = False
    breaker.suspect(OSError("server closed the connection"))
    await settle(breaker)
    assert breaker.is_open and breaker.trips == 1
    with pytest.raises(StoreUnavailable, match=r"db is unavailable .*connection refused") as got:
        breaker.guard()
    # what a caller is told (a 503's reason): that it failed fast, not the driver's text
    assert got.value.failing_fast
    reason = public_reason(got.value)
    assert "failing fast" in reason and "refused" not in reason
    assert "failing fast" not in public_reason(StoreUnavailable("connection refused"))
    await breaker.close()


async def test_an_unconfirmed_failure_leaves_it_closed() -> None:
    service = Service()
    breaker = Breaker("db", service.probe, error=StoreUnavailable, interval_s=0.01)
    breaker.suspect(OSError("one broken connection"))
    await settle(breaker)
    assert not breaker.is_open and breaker.trips == 0
    breaker.guard()  # does not raise
    await breaker.close()


async def test_it_closes_only_after_recovery_ran() -> None:
    service = Service()
    breaker = Breaker(
        "db", service.probe, error=StoreUnavailable, interval_s=0.01, on_recovery=service.recover
    )
    service.up = False
    breaker.suspect(OSError("gone"))
    await settle(breaker)
    assert breaker.is_open
    service.up = True
    for _ in range(200):
        if not is_open(breaker):
            break
        await asyncio.sleep(0.005)
    assert not is_open(breaker)
    assert service.recoveries == 1
    breaker.guard()
    await breaker.close()


async def test_a_failing_recovery_keeps_it_open() -> None:
    service = Service()
    attempts = 0

    async def recover() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("pool could not open")

    breaker = Breaker(
        "db", service.probe, error=StoreUnavailable, interval_s=0.01, on_recovery=recover
    )
    service.up = False
    breaker.suspect(OSError("gone"))
    await settle(breaker)
    service.up = True
    for _ in range(400):
        if not breaker.is_open:
            break
        await asyncio.sleep(0.005)
    assert attempts == 3 and not breaker.is_open
    await breaker.close()


async def test_many_suspicions_share_one_probe() -> None:
    service = Service()
    breaker = Breaker("db", service.probe, error=StoreUnavailable, interval_s=0.01)
    service.up = False
    for _ in range(50):
        breaker.suspect(OSError("gone"))
    await settle(breaker)
    assert service.most_concurrent == 1
    await breaker.close()
    assert breaker._task is None
