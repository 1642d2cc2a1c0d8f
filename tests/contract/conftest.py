"""Fixtures of the store contract suite: one ``store`` per adapter, fresh for every test.

An adapter joins the suite by adding one entry to ``STORE_ADAPTERS``; every test then runs
against it unchanged. PostgreSQL is marked ``integration`` and skipped when no server answers
at ``HITSTREAM_TEST_PG_URL``: its tests share one throwaway database per session, and each data
folder (so each test) gets a schema of its own, picked through ``search_path``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from hitstream.stores.base import Store
from hitstream.stores.duckdb import DuckDBStore
from hitstream.stores.memory import MemoryStore
from hitstream.stores.socket import SocketStore, StoreServer
from tests.brokers import PG_ADMIN_URL


@dataclass(frozen=True)
class StoreAdapter:
    name: str
    open: Callable[[Path], Store]
    """A store over the data kept under this folder: opening twice sees the same data."""
    durable: bool
    """Whether data survives ``close`` and a second ``open`` of the same folder."""
    marks: tuple[pytest.MarkDecorator, ...] = ()


class PostgresSchemas:
    """A database made on first use (dropped at the end of the session), a schema per folder."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.database: str | None = None
        self.refused: str | None = None

    def url_for(self, folder: Path) -> str:
        import psycopg

        if self.refused is not None:
            pytest.skip(self.refused)
        if self.database is None:
            name = f"hs_test_{uuid.uuid4().hex[:12]}"
            try:
                with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=3) as admin:
                    admin.execute(f'CREATE DATABASE "{name}"')
            except psycopg.OperationalError as exc:
                self.refused = f"no PostgreSQL at {self.admin_url}: {exc}"
                pytest.skip(self.refused)
            self.database = name
        schema = "hs_" + hashlib.sha1(str(folder).encode()).hexdigest()[:16]
        base = urlsplit(self.admin_url)._replace(path=f"/{self.database}").geturl()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        options = urlencode({"options": f"-csearch_path={schema}"})
        return f"{base}{'&' if '?' in base else '?'}{options}"

    def drop(self) -> None:
        if self.database is None:
            return
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self.database = None


POSTGRES = PostgresSchemas(PG_ADMIN_URL)


def _postgres(folder: Path) -> Store:
    pytest.importorskip("psycopg")
    from hitstream.stores.postgres import PostgresStore

    return PostgresStore(POSTGRES.url_for(folder), max_size=4)


class ServedDuckDB(SocketStore):
    """A DuckDB store lent over the control socket, used through ``SocketStore``: what the
    CLI does while ``serve`` holds the file."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder / "control.sock")
        self.owner = DuckDBStore(folder / "hitstream.duckdb")
        self.server = StoreServer(self.owner, folder / "control.sock")

    async def start(self) -> None:
        await self.owner.start()
        await self.server.start()
        await super().start()

    async def close(self) -> None:
        await super().close()
        await self.server.close()
        await self.owner.close()


STORE_ADAPTERS: dict[str, StoreAdapter] = {
    "memory": StoreAdapter("memory", lambda _folder: MemoryStore(), durable=False),
    "duckdb": StoreAdapter(
        "duckdb", lambda folder: DuckDBStore(folder / "hitstream.duckdb"), durable=True
    ),
    "postgres": StoreAdapter("postgres", _postgres, durable=True, marks=(pytest.mark.integration,)),
    "socket": StoreAdapter("socket", ServedDuckDB, durable=True),
}


def _params(names: list[str]) -> list[object]:
    return [pytest.param(name, marks=STORE_ADAPTERS[name].marks) for name in names]


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_database() -> Iterator[None]:
    yield
    POSTGRES.drop()


@pytest.fixture(params=_params(sorted(STORE_ADAPTERS)))
def store_adapter(request: pytest.FixtureRequest) -> StoreAdapter:
    return STORE_ADAPTERS[str(request.param)]


@pytest.fixture
async def store(store_adapter: StoreAdapter, tmp_path: Path) -> AsyncIterator[Store]:
    opened = store_adapter.open(tmp_path)
    await opened.start()
    yield opened
    await opened.close()


@pytest.fixture(params=_params(sorted(name for name in STORE_ADAPTERS if name != "memory")))
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each adapter that is not the reference, to compare against ``MemoryStore``."""
    opened = STORE_ADAPTERS[str(request.param)].open(tmp_path)
    await opened.start()
    yield opened
    await opened.close()
