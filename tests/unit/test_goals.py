"""The domain of goals and funnels: path patterns, checks naming the field, funnel depth."""

from __future__ import annotations

import re

import pytest

from hitstream.domain.errors import QueryError
from hitstream.domain.funnels import check_window, new_funnel, parse_steps, reached, steps_answer
from hitstream.domain.goals import Goal, new_goal, path_matches, pattern_regex


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("/pricing*", "/pricing", True),
        ("/pricing*", "/pricing-plans", True),
        ("/pricing*", "/pricing/faq", False),
        ("/blog/**", "/blog/a/b/c", True),
        ("/blog/**", "/blog", False),
        ("/*/edit", "/post/edit", True),
        ("/*/edit", "/a/b/edit", False),
        ("/a.b", "/aXb", False),  # literal dot
        ("/(x)+[y]?", "/(x)+[y]?", True),  # every regex character is literal
        ("/", "/x", False),  # whole path
        ("/ä/*", "/ä/ü", True),
        ("/**", "/line\nbreak", True),
    ],
)
def test_path_patterns(pattern: str, path: str, hit: bool) -> None:
    assert path_matches(pattern, path) is hit
    # the one expression every dialect reads: no dot, no flags
    assert "." not in pattern_regex(pattern).replace("\\.", "")
    assert re.fullmatch(pattern_regex(pattern), path) is not None if hit else True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "page": "/"}, "name"),
        ({"name": "a;b", "page": "/"}, "name"),
        ({"name": " a", "page": "/"}, "name"),
        ({"name": "a", "page": "x"}, "page"),
        ({"name": "a", "page": "/a***"}, "page"),
        ({"name": "a", "page": "/a b"}, "page"),
        ({"name": "a"}, "page"),
        ({"name": "a", "event_name": ""}, "event_name"),
        ({"name": "a", "event_name": "e", "props": {"k": 1}}, "props"),
        ({"name": "a", "page": "/", "props": {"k": "v"}}, "props"),
    ],
)
def test_bad_goals_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(QueryError) as caught:
        new_goal(body)
    assert caught.value.field == field


def test_goals_from_bodies() -> None:
    assert new_goal({"name": "P", "page": "/p*"}) == Goal("P", page="/p*")
    made = new_goal({"name": "S", "event_name": "signup", "props": {"b": "2", "a": "1"}})
    assert made == Goal("S", event_name="signup", props=(("a", "1"), ("b", "2")))
    assert made.as_dict() == {"name": "S", "event_name": "signup", "props": {"a": "1", "b": "2"}}


def test_steps_and_windows() -> None:
    for raw in (["page==/"], ["page==/"] * 9, ["page==/", "nonsense"], ["page==/", "a==b;c==d"]):
        with pytest.raises(QueryError) as caught:
            parse_steps(raw)
        assert caught.value.field == "step"
    for bad in (0, -1, 7 * 24 * 60 + 1, True, "5"):
        with pytest.raises(QueryError):
            check_window(bad)
    with pytest.raises(QueryError) as caught:
        new_funnel({"name": "F", "steps": "page==/"})
    assert caught.value.field == "steps"
    assert new_funnel({"name": "F", "steps": ["page==/", " goal==A "]}).steps == (
        "page==/",
        "goal==A",
    )


def test_reached_takes_the_best_start_in_order_within_the_window() -> None:
    a, b, c = (True, False, False), (False, True, False), (False, False, True)
    assert reached([(0, a), (1, b), (2, c)], None) == 3
    assert reached([(0, c), (1, b), (2, a)], None) == 1  # out of order
    assert reached([(0, a), (100, a), (101, b), (102, c)], 10) == 3  # the later start fits
    assert reached([(0, a), (100, b)], 10) == 1
    both = (True, True, False)
    assert reached([(0, both)], None) == 1  # one event is one step
    assert reached([], None) == 0


def test_steps_answer_rates_and_dropoff() -> None:
    assert steps_answer(["a", "b", "c"], [8, 3, 0]) == [
        {"label": "a", "visitors": 8, "conversion_rate": 100, "dropoff": 0},
        {"label": "b", "visitors": 3, "conversion_rate": 37.5, "dropoff": 5},
        {"label": "c", "visitors": 0, "conversion_rate": 0, "dropoff": 3},
    ]
    assert steps_answer(["a", "b"], [0, 0])[1]["conversion_rate"] == 0
