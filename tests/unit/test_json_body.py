"""The bounded JSON decode's answers: where a too-deep body nests too deep, by name."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitstream.services.json_body import MAX_DEPTH, BodyProblem, decode, deep_path


def first_too_deep(value: Any, path: str = "$", depth: int = 1) -> str | None:
    """The path of the first container (document order) at depth ``MAX_DEPTH + 1``, walked
    over the decoded value: the reference ``deep_path`` is held to."""
    if not isinstance(value, list | dict):
        return None
    if depth > MAX_DEPTH:
        return path
    items = enumerate(value) if isinstance(value, list) else value.items()
    for name, item in items:
        if isinstance(name, int):
            step = f"[{name}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            step = f".{name}"
        else:
            step = "[" + json.dumps(name, ensure_ascii=False) + "]"
        found = first_too_deep(item, path + step, depth + 1)
        if found is not None:
            return found
    return None


keys = st.text(min_size=0, max_size=6)
trees = st.recursive(
    st.none() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(tree=trees, wrap=st.integers(min_value=0, max_value=10))
def test_the_path_named_is_the_first_container_too_deep(tree: Any, wrap: int) -> None:
    for _ in range(wrap):
        tree = {"a b": [tree]}
    data = json.dumps(tree, ensure_ascii=False).encode()
    expected = first_too_deep(tree)
    if expected is None:
        decode(data)  # within the bound: it decodes
        return
    assert deep_path(data) == f"`{expected}`"
    with pytest.raises(BodyProblem) as refused:
        decode(data)
    assert refused.value.kind == "nested too deep"
    shown = f"`{expected}`" if len(expected) <= 78 else f"`{expected}"[:78] + "…`"
    assert refused.value.reason == f"nests deeper than {MAX_DEPTH} levels (at {shown})"


def test_object_keys_are_named_not_elided() -> None:
    body = {"site_id": "example.com", "props": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}
    with pytest.raises(BodyProblem) as refused:
        decode(json.dumps([body]).encode())
    assert refused.value.reason == "nests deeper than 8 levels (at `$[0].props.a.b.c.d.e.f`)"


def test_a_depth_past_the_scanned_prefix_falls_back_to_the_decoders_path() -> None:
    data = b'["' + b"x" * 70_000 + b'",' + b"[" * 20 + b"]" * 20 + b"]"
    assert deep_path(data) is None
    with pytest.raises(BodyProblem) as refused:
        decode(data)
    assert refused.value.reason == "nests deeper than 8 levels (at `$[1][0][0][0][0][0][0][0]`)"
