"""E2E fixtures: a real ``hitstream serve`` process per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import ServerProcess


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("serve") / "data").start()
    yield server
    try:
        server.terminate(timeout=60)
    finally:
        server.kill()
