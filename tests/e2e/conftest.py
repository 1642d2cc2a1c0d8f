"""E2E fixtures: a real ``hitstream serve`` process per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.midnight import clear_of_midnight
from tests.server import ServerProcess


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("serve") / "data").start()
    yield server
    try:
        server.terminate(timeout=60)
    finally:
        server.kill()


@pytest.fixture(autouse=True)
def _clear_of_midnight() -> None:
    """These tests send events now and read today's numbers (see tests.midnight)."""
    clear_of_midnight()
