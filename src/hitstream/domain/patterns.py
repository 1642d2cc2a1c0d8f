"""Regular expressions for filters: one checked syntax, one meaning, a linear-time matcher.

A pattern is parsed here into a small tree, then either run by ``Pattern.search`` (a Thompson
NFA simulated breadth-first, as RE2 does: time linear in the text times the program size, no
backtracking, so no pattern can blow up) or written out for a store's engine (``re2``: DuckDB's
RE2; ``postgres``: PostgreSQL's ARE engine, which runs a DFA for patterns without back
references or capturing groups, and this writer emits neither). Every literal is written as a
hex escape, so nothing the user typed reaches an engine unparsed, and the three engines agree:
the contract suite compares them on random patterns and values (decision 0017).

The syntax (a common subset; anything else is a ``QueryError`` naming ``filters``):

- literals; ``\\`` before any ASCII punctuation makes it literal; ``\\xHH``, ``\\n``, ``\\t``,
  ``\\r``; ``\\d`` ``[0-9]``, ``\\w`` ``[0-9A-Za-z_]``, ``\\s`` ``[ \\t\\n\\r\\f\\v]`` (ASCII
  only, everywhere) and their negations ``\\D`` ``\\W`` ``\\S``;
- ``.`` any character (newlines included); ``[...]`` and ``[^...]`` with ranges and the
  escapes above (a ``]`` or ``-`` that is meant literally is escaped);
- ``^`` start and ``$`` end of the value (not of a line);
- groups ``(...)`` and ``(?:...)`` (both only group), alternation ``|``;
- ``*`` ``+`` ``?`` ``{n}`` ``{n,}`` ``{n,m}`` (n, m at most ``MAX_REPEAT``), optionally lazy
  (``*?``: same truth value), on anything but an anchor.

Matching is case-sensitive and searches (``=~ blog`` matches ``/en/blog/x``); anchor with
``^`` and ``$`` for a whole value. At most ``MAX_PATTERN`` characters, and at most
``MAX_PROGRAM`` instructions once counted repeats are expanded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from hitstream.domain.errors import QueryError

MAX_PATTERN: Final = 256
MAX_REPEAT: Final = 100
MAX_PROGRAM: Final = 5000
MAX_CODE: Final = 0x10FFFF
_FIELD: Final = "filters"
_DIGIT: Final = ((0x30, 0x39),)
_WORD: Final = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_SPACE: Final = ((0x09, 0x0D), (0x20, 0x20))
_CLASSES: Final = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_CONTROL: Final = {"n": 0x0A, "t": 0x09, "r": 0x0D, "f": 0x0C, "v": 0x0B}
_SPECIAL: Final = frozenset("\\.+*?()|[]{}^$")

Ranges = tuple[tuple[int, int], ...]


# -- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chars:
    """One character from ``ranges`` (inclusive code points), or from outside them."""

    ranges: Ranges
    negated: bool = False

    def has(self, code: int) -> bool:
        inside = any(lo <= code <= hi for lo, hi in self.ranges)
        return inside != self.negated


@dataclass(frozen=True, slots=True)
class Anchor:
    end: bool  # False: ^, True: $


@dataclass(frozen=True, slots=True)
class Seq:
    parts: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    options: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Repeat:
    node: Node
    least: int
    most: int | None  # None: no upper bound


Node = Chars | Anchor | Seq | Alt | Repeat


def _normal(ranges: list[tuple[int, int]]) -> Ranges:
    """Sorted, merged ranges."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _complement(ranges: Ranges) -> Ranges:
    out: list[tuple[int, int]] = []
    cursor = 0
    for lo, hi in ranges:
        if lo > cursor:
            out.append((cursor, lo - 1))
        cursor = hi + 1
    if cursor <= MAX_CODE:
        out.append((cursor, MAX_CODE))
    return tuple(out)


# -- the parser ------------------------------------------------------------------------------


class _ClassEscape(Exception):
    def __init__(self, ranges: Ranges) -> None:
        super().__init__()
        self.ranges = ranges


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, reason: str) -> QueryError:
        return QueryError(_FIELD, f"pattern {self.text!r}: {reason} (at {self.at})")

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise self.fail("ends too early")
        self.at += 1
        return char

    def parse(self) -> Node:
        node = self.alternation()
        if self.at < len(self.text):
            raise self.fail(f"unexpected {self.peek()!r}")
        return node

    def alternation(self) -> Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.at += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self) -> Node:
        parts: list[Node] = []
        while self.peek() not in ("", "|", ")"):
            parts.append(self.repeat())
        return parts[0] if len(parts) == 1 else Seq(tuple(parts))

    def repeat(self) -> Node:
        node = self.atom()
        bounds = self.quantifier()
        if bounds is None:
            return node
        if isinstance(node, Anchor):
            raise self.fail("an anchor cannot be repeated")
        if self.peek() == "?":
            self.at += 1  # lazy: the same truth value
        if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self.counted_ahead()):
            raise self.fail("a repeat of a repeat needs a group")
        return Repeat(node, *bounds)

    def counted_ahead(self) -> bool:
        rest = self.text[self.at + 1 :]
        head = rest.split("}", 1)[0] if "}" in rest else ""
        return bool(head) and all(c.isdigit() or c == "," for c in head)

    def quantifier(self) -> tuple[int, int | None] | None:
        char = self.peek()
        if char == "*":
            self.at += 1
            return 0, None
        if char == "+":
            self.at += 1
            return 1, None
        if char == "?":
            self.at += 1
            return 0, 1
        if char != "{":
            return None
        if not self.counted_ahead():
            raise self.fail("'{' starts a count like {2}, {2,} or {2,5}; escape it as \\{")
        self.at += 1
        body = self.text[self.at : self.text.index("}", self.at)]
        self.at += len(body) + 1
        low, comma, high = body.partition(",")
        if not low.isdigit() or (high and not high.isdigit()):
            raise self.fail(f"bad count {{{body}}}")
        least = int(low)
        most = None if comma and not high else int(high) if high else least
        if least > MAX_REPEAT or (most is not None and most > MAX_REPEAT):
            raise self.fail(f"counts go up to {MAX_REPEAT}")
        if most is not None and most < least:
            raise self.fail(f"bad count {{{body}}}")
        return least, most

    def atom(self) -> Node:
        char = self.take()
        if char == "(":
            if self.text.startswith("?:", self.at):
                self.at += 2
            elif self.peek() == "?":
                raise self.fail("only (...) and (?:...) groups")
            inner = self.alternation()
            if self.peek() != ")":
                raise self.fail("a '(' is not closed")
            self.at += 1
            return inner
        if char == ".":
            return Chars((), negated=True)
        if char == "^":
            return Anchor(end=False)
        if char == "$":
            return Anchor(end=True)
        if char == "[":
            return self.bracket()
        if char == "\\":
            return self.escape(in_class=False)
        if char in "*+?{":
            raise self.fail(f"{char!r} repeats nothing; escape it as \\{char}")
        if char in ")]}":
            raise self.fail(f"unmatched {char!r}")
        return Chars(((ord(char), ord(char)),))

    def escape(self, *, in_class: bool) -> Chars:
        char = self.take()
        if char.lower() in _CLASSES:
            ranges = _CLASSES[char.lower()]
            return Chars(_complement(ranges)) if char.isupper() else Chars(ranges)
        if char in _CONTROL:
            code = _CONTROL[char]
            return Chars(((code, code),))
        if char == "x":
            digits = self.text[self.at : self.at + 2]
            if len(digits) != 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail("\\x takes two hex digits")
            self.at += 2
            code = int(digits, 16)
            return Chars(((code, code),))
        if char.isascii() and not char.isalnum() and char.isprintable():
            return Chars(((ord(char), ord(char)),))
        raise self.fail(f"unknown escape \\{char}")

    def bracket(self) -> Chars:
        negated = self.peek() == "^"
        if negated:
            self.at += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            char = self.take()
            if char == "]":
                if first:
                    raise self.fail("an empty [] matches nothing; escape a literal ] as \\]")
                break
            first = False
            try:
                low = self.class_item(char)
            except _ClassEscape as multi:
                ranges.extend(multi.ranges)
                continue
            if low is None:
                continue
            if self.peek() == "-" and self.text[self.at + 1 : self.at + 2] not in ("]", ""):
                self.at += 1
                try:
                    high = self.class_item(self.take())
                except _ClassEscape:
                    raise self.fail("a range needs a character on both sides") from None
                if high is None or high[0] < low[0]:
                    raise self.fail("a range goes from low to high")
                ranges.append((low[0], high[0]))
            else:
                ranges.append(low)
        return Chars(_normal(ranges), negated)

    def class_item(self, char: str) -> tuple[int, int] | None:
        """One item of a bracket: a character (code, code); a class escape adds its ranges."""
        if char == "\\":
            chars = self.escape(in_class=True)
            if len(chars.ranges) == 1 and chars.ranges[0][0] == chars.ranges[0][1]:
                return chars.ranges[0]
            raise _ClassEscape(chars.ranges)
        if char == "[":
            raise self.fail("escape a literal [ inside a class as \\[")
        return ord(char), ord(char)


def _parse(text: str) -> Node:
    return _Parser(text).parse()


# -- the program and its linear-time run ---------------------------------------------------

# instructions: ("c", Chars) consume one; ("s", x, y) split; ("j", x) jump; ("^",) ("$",); ("m",)
Instruction = tuple[object, ...]


def _size(node: Node) -> int:
    if isinstance(node, (Chars, Anchor)):
        return 1
    if isinstance(node, Seq):
        return sum(_size(p) for p in node.parts)
    if isinstance(node, Alt):
        return sum(_size(o) + 2 for o in node.options)
    copies = node.least + (node.most - node.least if node.most is not None else 1)
    return max(copies, 1) * (_size(node.node) + 2)


def _emit(node: Node, out: list[Instruction]) -> None:
    if isinstance(node, Chars):
        out.append(("c", node))
    elif isinstance(node, Anchor):
        out.append(("$",) if node.end else ("^",))
    elif isinstance(node, Seq):
        for part in node.parts:
            _emit(part, out)
    elif isinstance(node, Alt):
        jumps: list[int] = []
        for index, option in enumerate(node.options):
            if index < len(node.options) - 1:
                split = len(out)
                out.append(("s", split + 1, -1))
                _emit(option, out)
                jumps.append(len(out))
                out.append(("j", -1))
                out[split] = ("s", split + 1, len(out))
            else:
                _emit(option, out)
        for jump in jumps:
            out[jump] = ("j", len(out))
    else:
        for _ in range(node.least):
            _emit(node.node, out)
        if node.most is None:
            split = len(out)
            out.append(("s", split + 1, -1))
            _emit(node.node, out)
            out.append(("j", split))
            out[split] = ("s", split + 1, len(out))
        else:
            splits: list[int] = []
            for _ in range(node.most - node.least):
                splits.append(len(out))
                out.append(("s", len(out) + 1, -1))
                _emit(node.node, out)
            for split in splits:
                out[split] = ("s", split + 1, len(out))


@dataclass(frozen=True, slots=True)
class Pattern:
    """A checked pattern: its tree, and its program for ``search``."""

    text: str
    tree: Node
    program: tuple[Instruction, ...]

    def search(self, value: str) -> bool:
        """Whether the pattern matches somewhere in ``value``: a breadth-first run of the
        program (every thread advances one character at a time), so the time is at most
        ``len(value) * len(program)`` steps whatever the pattern."""
        program = self.program
        size = len(value)
        current: list[int] = []
        for position in range(size + 1):
            # follow the empty moves of every thread, and of a new one (the search is
            # unanchored), in priority order; then step the ones that consume a character
            pending = [0, *reversed(current)]
            seen: set[int] = set()
            nxt: list[int] = []
            while pending:
                pc = pending.pop()
                if pc in seen:
                    continue
                seen.add(pc)
                op = program[pc]
                kind = op[0]
                if kind == "m":
                    return True
                if kind == "j":
                    pending.append(op[1])  # type: ignore[arg-type]
                elif kind == "s":
                    pending.append(op[2])  # type: ignore[arg-type]
                    pending.append(op[1])  # type: ignore[arg-type]
                elif kind == "^":
                    if position == 0:
                        pending.append(pc + 1)
                elif kind == "$":
                    if position == size:
                        pending.append(pc + 1)
                elif position < size:
                    chars = op[1]
                    assert isinstance(chars, Chars)
                    if chars.has(ord(value[position])):
                        nxt.append(pc + 1)
            current = nxt
        return False


@lru_cache(maxsize=512)
def compile_pattern(text: str) -> Pattern:
    """Parse and check ``text``; raise ``QueryError`` (field ``filters``) if it is not a
    pattern of the syntax above, is empty, or is too long or too big."""
    if not text:
        raise QueryError(_FIELD, "a pattern must not be empty")
    if len(text) > MAX_PATTERN:
        raise QueryError(_FIELD, f"a pattern has at most {MAX_PATTERN} characters")
    tree = _parse(text)
    if _size(tree) > MAX_PROGRAM:
        raise QueryError(_FIELD, f"pattern {text!r} is too big once its counts are expanded")
    program: list[Instruction] = []
    _emit(tree, program)
    program.append(("m",))
    return Pattern(text, tree, tuple(program))


# -- writing a pattern for a store's engine --------------------------------------------------


def _re2_char(code: int) -> str:
    char = chr(code)
    return char if char.isascii() and char.isalnum() else f"\\x{{{code:X}}}"


def _pg_char(code: int) -> str:
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _write(node: Node, char: type[_CharWriter]) -> str:
    if isinstance(node, Chars):
        return char.chars(node)
    if isinstance(node, Anchor):
        return "$" if node.end else "^"
    if isinstance(node, Seq):
        return "".join(
            _group(p, char) if isinstance(p, Alt) else _write(p, char) for p in node.parts
        )
    if isinstance(node, Alt):
        return "|".join(_write(o, char) or "(?:)" for o in node.options)
    most = "" if node.most is None else str(node.most)
    short = {(0, None): "*", (1, None): "+", (0, 1): "?"}
    count = short.get((node.least, node.most)) or (
        f"{{{node.least},{most}}}" if node.most != node.least else f"{{{node.least}}}"
    )
    inner = _write(node.node, char)
    atomic = isinstance(node.node, Chars)
    return (inner if atomic else f"(?:{inner})") + count


def _group(node: Node, char: type[_CharWriter]) -> str:
    return f"(?:{_write(node, char)})"


class _CharWriter:
    one = staticmethod(_re2_char)
    anything = "."

    @classmethod
    def chars(cls, node: Chars) -> str:
        if node.negated and not node.ranges:
            return cls.anything
        if not node.negated and len(node.ranges) == 1 and node.ranges[0][0] == node.ranges[0][1]:
            return cls.one(node.ranges[0][0])
        items = "".join(
            cls.one(lo) if lo == hi else f"{cls.one(lo)}-{cls.one(hi)}" for lo, hi in node.ranges
        )
        if not items:  # [^] of nothing cannot be written: every character is in no range
            return "[^" + cls.one(0) + "-" + cls.one(MAX_CODE) + "]"
        return f"[{'^' if node.negated else ''}{items}]"


class _Re2Writer(_CharWriter):
    one = staticmethod(_re2_char)


class _PgWriter(_CharWriter):
    one = staticmethod(_pg_char)


def to_re2(pattern: Pattern) -> str:
    """The pattern for RE2 (DuckDB's ``regexp_matches``): ``.`` matches newlines too."""
    return "(?s)" + (_write(pattern.tree, _Re2Writer) or "(?:)")


def to_postgres(pattern: Pattern) -> str:
    """The pattern for PostgreSQL's ``~`` (an ARE; newline-insensitive by default, so ``.``
    and ``[^...]`` match newlines and ``^``/``$`` are the ends of the value)."""
    return "(?:" + (_write(pattern.tree, _PgWriter) or "") + ")"
