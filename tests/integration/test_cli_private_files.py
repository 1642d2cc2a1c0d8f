"""What hitstream writes is its user's alone: the data folder, the embedded store and log, and
the salts, made by a real ``hitstream`` process under the common umask 022."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_the_data_folder_and_every_file_in_it_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "HITSTREAM_DATA_DIR": str(data), "HITSTREAM_SITES": "a.io"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.umask(0o022); from hitstream.cli import main; main()",
            "migrate",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    modes = _modes(data)
    assert any(name.startswith("hitstream.duckdb") for name in modes), modes
    assert {name: oct(mode) for name, mode in modes.items() if mode & 0o077} == {}


def test_open_to_others_reads_the_group_and_other_bits(tmp_path: Path) -> None:
    from hitstream.disk import open_to_others

    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    assert open_to_others(folder) == 0o055
    folder.chmod(0o700)
    assert open_to_others(folder) is None
    assert open_to_others(tmp_path / "missing") is None
