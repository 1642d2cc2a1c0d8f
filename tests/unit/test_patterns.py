"""Filter patterns: the checked syntax, the linear-time matcher, and the new operators."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitstream.domain.errors import QueryError
from hitstream.domain.patterns import MAX_PATTERN, compile_pattern, to_postgres, to_re2
from hitstream.domain.stats import Filter, parse_filters


@pytest.mark.parametrize(
    ("pattern", "value", "found"),
    [
        ("^/blog/", "/blog/post", True),
        ("^/blog/", "/en/blog/post", False),
        ("blog", "/en/blog/post", True),
        ("\\.pdf$", "/a/b.pdf", True),
        ("\\.pdf$", "/a/b.pdf\n", False),  # '$' is the end of the value, not of a line
        ("a.c", "a\nc", True),  # '.' takes newlines
        ("^/(en|de)/docs", "/de/docs/x", True),
        ("^/(en|de)/docs", "/fr/docs/x", False),
        ("^/p/\\d{2,3}$", "/p/123", True),
        ("^/p/\\d{2,3}$", "/p/1234", False),
        ("[^/]+\\.html", "/x/index.html", True),
        ("^[A-Z]", "abc", False),  # case-sensitive
        ("\\x2F", "/", True),
        ("ä+", "/Ä/ä", True),
        ("^(?:a|b)*?c$", "ababc", True),
        ("^$", "", True),
    ],
)
def test_search(pattern: str, value: str, found: bool) -> None:
    assert compile_pattern(pattern).search(value) is found


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "(",
        "a)",
        "[a",
        "[]",
        "*a",
        "a**",
        "a{101}",
        "a{3,2}",
        "^*",
        "\\1",  # back references are not in the syntax
        "(?=a)",  # nor look-ahead
        "(?i)a",
        "\\p{L}",
        "[z-a]",
        "x" * (MAX_PATTERN + 1),
        "((a{100}){100}){100}",  # too big once expanded
    ],
)
def test_bad_patterns_are_query_errors_naming_filters(pattern: str) -> None:
    with pytest.raises(QueryError) as caught:
        compile_pattern(pattern)
    assert caught.value.field == "filters"


def test_a_pattern_that_backtracking_engines_blow_up_on_is_linear_here() -> None:
    # (a|a)*b against a long run of 'a': 2^n paths for a backtracking engine
    assert compile_pattern("^(a|a)*(a*)*b$").search("a" * 5000) is False
    assert compile_pattern("^(a|a)*(a*)*b$").search("a" * 5000 + "b") is True


SIMPLE = st.sampled_from(["a", "b", ".", "[ab]", "[^a]", "\\d", "x", "/"])


@st.composite
def simple_patterns(draw: st.DrawFn) -> str:
    parts = [
        draw(SIMPLE) + draw(st.sampled_from(["", "*", "+", "?", "{1,2}"]))
        for _ in range(draw(st.integers(1, 4)))
    ]
    text = "".join(parts)
    if draw(st.booleans()):
        text = "(" + text + "|" + draw(SIMPLE) + ")"
    return ("^" if draw(st.booleans()) else "") + text + ("$" if draw(st.booleans()) else "")


@given(simple_patterns(), st.text(alphabet="ab/x1\n", max_size=8))
def test_search_agrees_with_pythons_engine(pattern: str, value: str) -> None:
    want = re.search(pattern.replace("$", "\\Z"), value, re.ASCII | re.DOTALL) is not None
    assert compile_pattern(pattern).search(value) is want


def test_engines_get_every_literal_as_an_escape() -> None:
    pattern = compile_pattern("^/a'b;c|d$")
    assert "'" not in to_re2(pattern) and ";" not in to_postgres(pattern)
    assert to_re2(pattern).startswith("(?s)")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("page!~blog", Filter("page", "!~", ("blog",))),
        ("page=~^/(a|b)$", Filter("page", "=~", ("^/(a|b)$",))),  # '|' is the pattern's
        ("page!=~^/a", Filter("page", "!=~", ("^/a",))),
        ("page==~x", Filter("page", "==", ("~x",))),  # the longest operator at the earliest place
        ("page does not contain blog", Filter("page", "!~", ("blog",))),
        ("page matches ^/docs", Filter("page", "=~", ("^/docs",))),
        ("page does not match ^/docs", Filter("page", "!=~", ("^/docs",))),
        ("country is not DE|FR", Filter("country", "!=", ("DE", "FR"))),
        ("page contains a", Filter("page", "~", ("a",))),
        ("country is DE", Filter("country", "==", ("DE",))),
    ],
)
def test_parse_new_operators_and_aliases(raw: str, expected: Filter) -> None:
    assert parse_filters(raw) == (expected,)


@pytest.mark.parametrize("raw", ["page=~(", "page!=~", "page!~", "page=~" + "a" * 300])
def test_bad_filters_name_filters(raw: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_filters(raw)
    assert caught.value.field == "filters"


@pytest.mark.parametrize(
    ("flt", "value", "passes"),
    [
        (Filter("page", "!~", ("BLOG", "x")), "/blog/a", False),
        (Filter("page", "!~", ("BLOG", "x")), "/docs", True),
        (Filter("page", "=~", ("^/d",)), "/docs", True),
        (Filter("page", "!=~", ("^/d",)), "/docs", False),
        (Filter("page", "!=~", ("^/d",)), "/a", True),
        (Filter("entry_page", "!=~", ("^/d",)), None, False),  # no value never passes
        (Filter("entry_page", "!~", ("d",)), None, False),
    ],
)
def test_filter_matches_for_the_live_channel(flt: Filter, value: str | None, passes: bool) -> None:
    assert flt.matches(value) is passes
