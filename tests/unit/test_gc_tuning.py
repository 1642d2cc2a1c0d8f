"""Every role tunes Python's cyclic collector at start-up (decision 0035)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hitstream import cli


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_are_rare() -> None:
    gc.unfreeze()
    built = [{"start-up": object()} for _ in range(1000)]  # what start-up leaves alive
    cli._tune_gc()
    assert gc.get_freeze_count() >= len(built)
    assert gc.get_threshold()[0] == cli.GC_YOUNG_THRESHOLD > 700
    # cycles are still collected
    gc.collect()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
