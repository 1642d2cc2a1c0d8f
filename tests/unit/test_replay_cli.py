"""``hitstream replay``: its flags reach the replay (``--from-offset N`` was read as 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hitstream.cli import app
from hitstream.services import replay as replay_module
from hitstream.services.replay import ReplayResult


def test_from_offset_starts_every_partition_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: dict[str, Any] = {}

    async def fake(processor: object, log: object, **kw: Any) -> ReplayResult:
        asked.update(kw)
        return ReplayResult(messages=0, stored=0)

    monkeypatch.setattr(replay_module, "replay", fake)
    data = ["--data-dir", str(tmp_path / "data")]
    done = CliRunner().invoke(app, ["replay", "--from-offset", "42", *data])
    assert done.exit_code == 0, done.output
    assert (asked["start"], asked["default"], asked["dead_letters"]) == ({}, 42, False)
    both = CliRunner().invoke(app, ["replay", "--since", "2026-12-01T00:00:00Z", "--dead-letter"])
    assert both.exit_code == 2 and "--dead-letter takes --from-offset" in both.output
    negative = CliRunner().invoke(app, ["replay", "--from-offset", "-5", *data])
    assert negative.exit_code == 2 and "--from-offset" in negative.output  # not "no such table"
