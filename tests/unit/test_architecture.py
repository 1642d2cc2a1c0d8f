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


def test_the_error_tree_drawn_in_errors_py_is_the_class_tree() -> None:
    import hitstream.errors as errors

    doc = errors.__doc__ or ""
    drawn: dict[str, str] = {}  # class -> its parent, as drawn
    parents = ["HitstreamError"]
    for line in doc.splitlines():
        found = re.match(r"^\s*((?:│   |    )*)[├└]── (\w+)", line)
        if found is None:
            continue
        depth = len(found.group(1)) // 4
        del parents[depth + 1 :]
        drawn[found.group(2)] = parents[depth]
        parents.append(found.group(2))
    exported = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type) and name != "HitstreamError"
    }
    assert set(drawn) == exported
    for name, parent in drawn.items():
        assert getattr(errors, name).__bases__ == (getattr(errors, parent),), name
