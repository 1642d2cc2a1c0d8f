"""Request bodies decoded as JSON with bounds: strict UTF-8, limited nesting, finite numbers.

A JSON decoder left to itself recurses once per nesting level (``[[[[...]]]]`` a million
deep ends in ``RecursionError``), lets invalid UTF-8 escape as ``UnicodeDecodeError`` and
reads ``1e400`` as infinity. ``decode`` makes each of those a ``BodyProblem`` with a reason a
client can act on, so the collector answers 400 and never a 5xx. The nesting bound is a
typed decode (a union of containers ``MAX_DEPTH`` levels deep), so msgspec stops at the limit
without recursing further, at the speed of an untyped decode.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

MAX_DEPTH: Final = 8
"""Containers nested inside each other. An event needs 3 (batch array > event > props);
the margin leaves room for per-event reporting of deeper (invalid) props."""


class BodyProblem(ValueError):
    """The body cannot be read as JSON: ``reason`` says why and where (the 400 answer),
    ``kind`` is one of a fixed few phrases (a metric label, so never input)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _bounded_json_type(depth: int) -> Any:
    scalar: Any = str | int | float | bool | None
    value: Any = scalar
    for _ in range(depth):
        value = scalar | list[value] | dict[str, value]
    return value


_DECODER: Final = msgspec.json.Decoder(_bounded_json_type(MAX_DEPTH))


_LONE_HIGH: Final = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
"""A JSON escape of a high surrogate not followed by a low one's."""


_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')
"""A JSON string (escapes included) or a structural character: enough to follow nesting."""
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCANNED: Final = 65_536
"""How much of a body ``deep_path`` reads (only after the decode refused it)."""


def deep_path(data: bytes) -> str | None:
    """The JSON path (``$.props.a.b``, ``$[0].props``) of the first container nested deeper
    than ``MAX_DEPTH``, with object keys by name: msgspec names them ``[...]``. None when it
    lies past the first ``_SCANNED`` bytes or cannot be followed."""
    path: list[str] = []  # a segment per open container but the outermost
    index: list[int] = []  # per open container: the array index, or -1 for an object
    key: str | None = None  # the current member's name, in an object
    expect_key = False
    for token in _TOKENS.finditer(data, 0, _SCANNED):
        text = token.group()
        if text in (b"[", b"{"):
            if index:
                path.append(f"[{index[-1]}]" if index[-1] >= 0 else _member(key))
            if len(index) == MAX_DEPTH:
                return "`$" + "".join(path) + "`"
            index.append(0 if text == b"[" else -1)
            expect_key = text == b"{"
        elif text in (b"]", b"}"):
            if not index:
                return None
            index.pop()
            if path:
                path.pop()
            expect_key = False
        elif text == b",":
            if index and index[-1] >= 0:
                index[-1] += 1
            expect_key = bool(index) and index[-1] < 0
        elif text == b":":
            expect_key = False
        elif expect_key:  # a string where a member's name goes
            try:
                key = msgspec.json.decode(text, type=str)
            except (msgspec.DecodeError, UnicodeDecodeError):
                return None
            expect_key = False
    return None


def _member(key: str | None) -> str:
    if key is None:
        return "[?]"
    return f".{key}" if _NAME.fullmatch(key) else "[" + msgspec.json.encode(key).decode() + "]"


def decode(data: bytes) -> object:
    """One JSON value from ``data``, or ``BodyProblem``. Integers may still be large: the
    domain bounds each field's range (it knows what each one means)."""
    if not data.strip():  # msgspec would say "Input data was truncated": true, but unclear
        raise BodyProblem("empty", "is empty (a JSON event or array of events was expected)")
    try:
        return _DECODER.decode(data)
    except UnicodeDecodeError:
        raise BodyProblem("not UTF-8", "is not valid UTF-8") from None
    except msgspec.ValidationError as exc:
        message = str(exc)
        if message.startswith("Number out of range"):
            raise BodyProblem("number out of range", "holds a number out of range") from None
        # msgspec's own path names object members "[...]"; it is already in backticks
        where = deep_path(data) or (
            message.rsplit(" - at ", 1)[-1] if " - at " in message else "`$`"
        )
        if len(where) > 80:
            where = where[:78] + "…`"
        raise BodyProblem(
            "nested too deep", f"nests deeper than {MAX_DEPTH} levels (at {where})"
        ) from None
    except msgspec.DecodeError as exc:
        lone = _LONE_HIGH.search(data) if str(exc) == "Input data was truncated" else None
        if lone is not None:  # msgspec reads on for the low half and meets the end
            escape = lone.group(0).decode("ascii")
            raise BodyProblem(
                "not JSON", f"is not valid JSON: a string holds {escape}, half of a surrogate pair"
            ) from None
        raise BodyProblem("not JSON", f"is not valid JSON: {exc}") from None
