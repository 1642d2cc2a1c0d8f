"""Fixtures of the store contract suite: one ``store`` per adapter, fresh for every test.

An adapter joins the suite by adding one entry to ``STORE_ADAPTERS`` (PostgreSQL will, with a
skip when no server is reachable); every test then runs against it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hitstream.stores.base import Store
from hitstream.stores.duckdb import DuckDBStore
from hitstream.stores.memory import MemoryStore


@dataclass(frozen=True)
class StoreAdapter:
    name: str
    open: Callable[[Path], Store]
    """A store over the data kept under this folder: opening twice sees the same data."""
    durable: bool
    """Whether data survives ``close`` and a second ``open`` of the same folder."""


STORE_ADAPTERS: dict[str, StoreAdapter] = {
    "memory": StoreAdapter("memory", lambda _folder: MemoryStore(), durable=False),
    "duckdb": StoreAdapter(
        "duckdb", lambda folder: DuckDBStore(folder / "hitstream.duckdb"), durable=True
    ),
}


@pytest.fixture(params=sorted(STORE_ADAPTERS))
def store_adapter(request: pytest.FixtureRequest) -> StoreAdapter:
    return STORE_ADAPTERS[str(request.param)]


@pytest.fixture
async def store(store_adapter: StoreAdapter, tmp_path: Path) -> AsyncIterator[Store]:
    opened = store_adapter.open(tmp_path)
    await opened.start()
    yield opened
    await opened.close()


@pytest.fixture(params=sorted(name for name in STORE_ADAPTERS if name != "memory"))
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each adapter that is not the reference, to compare against ``MemoryStore``."""
    opened = STORE_ADAPTERS[str(request.param)].open(tmp_path)
    await opened.start()
    yield opened
    await opened.close()
