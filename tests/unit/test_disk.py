"""The data-folder readiness check: a folder that refuses a write makes the process unready."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitstream.disk import PROBE_NAME, DataFolders
from hitstream.errors import DiskUnavailable


async def test_a_writable_folder_is_ready_and_keeps_no_probe(tmp_path: Path) -> None:
    await DataFolders([tmp_path]).check()
    assert not (tmp_path / PROBE_NAME).exists()


async def test_a_folder_that_refuses_writes_is_named(tmp_path: Path) -> None:
    # /proc refuses new files even to root: a stand-in for a full or read-only disk here;
    # the fault-injection tier fills a real file system (tests/faults/test_disk_full.py)
    with pytest.raises(DiskUnavailable, match="/proc refuses writes"):
        await DataFolders([tmp_path, Path("/proc")]).check()


async def test_a_folder_not_made_yet_is_not_a_failure(tmp_path: Path) -> None:
    await DataFolders([tmp_path / "later"]).check()
    assert not (tmp_path / "later").exists()
