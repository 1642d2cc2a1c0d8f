"""Fault-tier fixtures: private services (stopped and started by the tests) and their URLs."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import tansu_binary
from tests.conftest import _missing
from tests.faults.services import PrivatePostgres, S3Broker, postgres_bindir


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        _missing("no PostgreSQL server binaries (initdb, postgres) to start a private cluster")
    cluster = PrivatePostgres(bindir)
    cluster.start()
    yield cluster
    cluster.close()


@pytest.fixture
def pg_url(private_postgres: PrivatePostgres) -> str:
    """A fresh database on the private cluster (started again if a test left it stopped)."""
    private_postgres.start()
    return private_postgres.create_database(f"faults_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def s3_broker(tmp_path: Path) -> Iterator[S3Broker]:
    tansu = tansu_binary()
    moto = Path(sys.executable).parent / "moto_server"  # moto[server], a dev dependency
    if tansu is None or not moto.exists():
        _missing("no Tansu broker or moto_server: ./dev setup and requirements-broker.txt")
    broker = S3Broker(tansu, moto, tmp_path / "broker")
    broker.start()
    yield broker
    broker.close()


def stored_ids(url: str, site: str) -> list[str]:
    """Every event id of ``site`` in the PostgreSQL store, duplicates kept."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT event_id::text FROM events WHERE site_id = %s", (site,)
        ).fetchall()
    return [row[0] for row in rows]
