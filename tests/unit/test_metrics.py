"""The metrics helpers: a histogram fed in bulk reads exactly as one fed value by value."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from hitstream.metrics import observe_many

_BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0, 60.0)


def _pair() -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    one, other = CollectorRegistry(), CollectorRegistry()
    return (
        one,
        Histogram("h_seconds", "h", buckets=_BUCKETS, registry=one),
        other,
        Histogram("h_seconds", "h", buckets=_BUCKETS, registry=other),
    )


def _samples(registry: CollectorRegistry) -> tuple[list[str], float]:
    """Every line but the sum and the creation time, and the sum (added in another order in
    bulk: equal to the last bits of a float)."""
    lines = generate_latest(registry).decode().splitlines()
    kept = [line for line in lines if not line.startswith(("h_seconds_created", "h_seconds_sum"))]
    (summed,) = [float(line.split()[1]) for line in lines if line.startswith("h_seconds_sum")]
    return kept, summed


def _same(one: CollectorRegistry, other: CollectorRegistry) -> None:
    (lines, summed), (other_lines, other_summed) = _samples(one), _samples(other)
    assert lines == other_lines
    assert math.isclose(summed, other_summed, rel_tol=1e-12, abs_tol=1e-12)


@given(
    st.lists(
        st.one_of(
            st.sampled_from([0.0, *_BUCKETS]),  # on a bound: that bucket, as observe puts it
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
        ),
        max_size=200,
    )
)
def test_bulk_observation_equals_one_by_one(amounts: list[float]) -> None:
    one, bulk, other, single = _pair()
    observe_many(bulk, amounts)
    for amount in amounts:
        single.observe(amount)
    _same(one, other)


def test_bulk_observation_adds_to_what_is_there() -> None:
    rng = random.Random(3)
    one, bulk, other, single = _pair()
    for _ in range(5):
        amounts = [rng.expovariate(2.0) for _ in range(rng.randrange(0, 50))]
        observe_many(bulk, amounts)
        for amount in amounts:
            single.observe(amount)
    _same(one, other)
    counts = [line for line in _samples(one)[0] if line.startswith("h_seconds_count")]
    assert counts != ["h_seconds_count 0.0"]
