"""docs/architecture.md's module map names exactly the packages and top-level modules of
src/hitstream: a package added, moved or removed without its paragraph fails here."""

from __future__ import annotations

import re
from pathlib import Path

import hitstream

ROOT = Path(hitstream.__file__).parent
DOC = Path(__file__).parents[2] / "docs" / "architecture.md"


def in_the_tree() -> set[str]:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    return {f"hitstream.{name}" for name in packages | modules}


def in_the_map() -> set[str]:
    map_part = DOC.read_text(encoding="utf-8").split("## Module map", 1)[1]
    return set(re.findall(r"^### `(hitstream\.[a-z_]+)`$", map_part, flags=re.MULTILINE))


def test_the_module_map_matches_the_tree() -> None:
    assert in_the_map() == in_the_tree()
