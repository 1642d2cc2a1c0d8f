"""/readyz: 503 naming a part the roles need; 200 "degraded" when only an optional part is down."""

from __future__ import annotations

from pathlib import Path

import httpx

from hitstream.bootstrap import build
from hitstream.errors import FanoutUnavailable
from hitstream.log.memory import MemoryLog
from hitstream.settings import Settings
from hitstream.web.app import create_app


async def readyz(tmp_path: Path, roles: frozenset[str], **broken: bool) -> httpx.Response:
    runtime = build(Settings(data_dir=tmp_path, log_url="memory://", store_url="memory://"), roles)
    if broken.get("log"):
        assert isinstance(runtime.log, MemoryLog)
        runtime.log.available = False
    if broken.get("fanout"):

        async def down() -> None:
            raise FanoutUnavailable("redis: connection refused")

        runtime.fanout.check = down  # type: ignore[method-assign]
    app = create_app(runtime.services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        return await client.get("/readyz")


async def test_everything_up_is_ready(tmp_path: Path) -> None:
    answer = await readyz(tmp_path, frozenset({"collector", "processor", "web"}))
    assert (answer.status_code, answer.json()["status"]) == (200, "ready")
    checks = answer.json()["checks"]
    assert {name for name, c in checks.items() if not c["required"]} == {"fanout", "cache"}
    # the collector writes salts in the data folder: the disk is checked
    assert checks["disk"] == {"ok": True, "adapter": "disk", "required": True}


async def test_a_needed_part_down_is_unavailable_and_named(tmp_path: Path) -> None:
    answer = await readyz(tmp_path, frozenset({"collector"}), log=True)
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["log"]["ok"] is False
    assert "switched off" in body["checks"]["log"]["error"]


async def test_an_optional_part_down_is_degraded_but_ready(tmp_path: Path) -> None:
    answer = await readyz(tmp_path, frozenset({"processor", "web"}), fanout=True)
    assert (answer.status_code, answer.json()["status"]) == (200, "degraded")
    assert answer.json()["checks"]["fanout"]["ok"] is False


async def test_a_role_is_not_judged_by_parts_it_does_not_use(tmp_path: Path) -> None:
    answer = await readyz(tmp_path, frozenset({"web"}), log=True)
    assert (answer.status_code, answer.json()["status"]) == (200, "ready")
    assert "log" not in answer.json()["checks"]
