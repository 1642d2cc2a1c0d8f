"""Alert rules: parsing with named errors, the pending/firing/resolved machine, grouping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hitstream.domain.alerts import (
    OK,
    Alert,
    AlertRule,
    AlertState,
    Change,
    Probe,
    Status,
    Transition,
    duration,
    number,
    parse_rules,
    plan,
    rule_from,
    step,
)
from hitstream.errors import QueryError

T0 = 1_790_000_000_000
GOOD = {"name": "spike", "metric": "pageviews", "window_s": 300, "op": ">", "threshold": 100}


def rule(**changes: Any) -> AlertRule:
    return rule_from({**GOOD, **changes})


# -- parsing --------------------------------------------------------------------------------


def test_a_minimal_rule_gets_the_documented_defaults() -> None:
    parsed = rule()
    assert parsed == AlertRule(
        name="spike",
        metric="pageviews",
        op=">",
        threshold=100.0,
        window_s=300.0,
        site_id="*",
        filters="",
        for_s=0.0,
        repeat_s=0.0,
        severity="warning",
    )


def test_a_full_rule_round_trips_through_as_dict() -> None:
    raw = {
        **GOOD,
        "site_id": "a.io",
        "filters": " page==/checkout ; country!=DE ",
        "for_s": 60,
        "repeat_s": 3600,
        "severity": "critical",
        "description": "checkout is on fire",
    }
    parsed = rule_from(raw)
    assert parsed.filters == "page==/checkout;country!=DE"
    assert rule_from(parsed.as_dict()) == parsed


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"name": None}, "rules[0].name", "must be a string"),
        ({"name": "  "}, "rules[0].name", "must not be empty"),
        ({"metric": "revenue"}, "rules[0].metric", "must be one of visitors"),
        ({"op": "=="}, "rules[0].op", "must be one of >, >=, <, <="),
        ({"threshold": "5"}, "rules[0].threshold", "must be a number"),
        ({"threshold": True}, "rules[0].threshold", "must be a number"),
        ({"window_s": 0}, "rules[0].window_s", "between 1 and"),
        ({"window_s": 99_999_999}, "rules[0].window_s", "between 1 and"),
        ({"for_s": -1}, "rules[0].for_s", "between 0 and"),
        ({"repeat_s": "1h"}, "rules[0].repeat_s", "number of seconds"),
        ({"severity": "page"}, "rules[0].severity", "info, warning, critical"),
        ({"filters": "planet==mars"}, "rules[0].filters", "unknown property 'planet'"),
        ({"filters": "page"}, "rules[0].filters", "has no operator"),
        ({"site_id": ""}, "rules[0].site_id", "must not be empty"),
        ({"treshold": 5}, "rules[0].treshold", "is not a rule field"),
    ],
)
def test_a_bad_field_is_named_with_the_reason(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    raw = {**GOOD, **changes}
    with pytest.raises(QueryError) as caught:
        parse_rules(json.dumps([raw]))
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_a_missing_required_field_is_named() -> None:
    raw = {k: v for k, v in GOOD.items() if k != "threshold"}
    with pytest.raises(QueryError, match=r"rules\[1\]\.threshold: is required"):
        parse_rules(json.dumps([GOOD, raw]))


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("[{", "rules", "is not valid JSON"),
        ('{"name": "x"}', "rules", "must be a JSON list"),
        ("[42]", "rules[0]", "must be a JSON object"),
        (json.dumps([GOOD, GOOD]), "rules[1].name", "used by an earlier rule"),
    ],
)
def test_bad_documents_are_refused(text: str, field: str, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_rules(text)
    assert (caught.value.field, reason in caught.value.reason) == (field, True)


def test_a_rules_object_is_accepted_as_well_as_a_list() -> None:
    assert parse_rules(json.dumps({"rules": [GOOD]})) == [rule()]
    assert parse_rules("[]") == []


# -- the state machine -----------------------------------------------------------------------


def run(spec: AlertRule, samples: list[tuple[int, float]]) -> list[tuple[int, Transition]]:
    """Feed (seconds after T0, value) samples; return (second, transition) for each one."""
    state = OK
    seen: list[tuple[int, Transition]] = []
    for second, value in samples:
        state, transition = step(spec, state, value, T0 + second * 1000)
        if transition is not None:
            seen.append((second, transition))
    return seen


def test_without_for_s_a_breach_fires_at_once_and_only_once() -> None:
    spec = rule(threshold=10)
    state, fired = step(spec, OK, 11, T0)
    assert fired == Transition(Change.FIRING, 11, T0, T0)
    assert state.status is Status.FIRING
    state, again = step(spec, state, 50, T0 + 10_000)
    assert again is None and state.status is Status.FIRING and state.value == 50


def test_equal_to_the_threshold_breaks_only_inclusive_comparisons() -> None:
    assert rule(op=">", threshold=5).holds(5) is False
    assert rule(op=">=", threshold=5).holds(5) is True
    assert rule(op="<", threshold=5).holds(5) is False
    assert rule(op="<=", threshold=5).holds(5) is True
    assert rule(op="<", threshold=5).holds(float("nan")) is False


def test_pending_until_the_condition_held_for_s_then_firing() -> None:
    spec = rule(threshold=10, for_s=60)
    state, transition = step(spec, OK, 20, T0)
    assert (state.status, state.since_ms, transition) == (Status.PENDING, T0, None)
    state, transition = step(spec, state, 20, T0 + 59_999)
    assert (state.status, transition) == (Status.PENDING, None)
    state, transition = step(spec, state, 25, T0 + 60_000)
    assert state.status is Status.FIRING
    assert transition == Transition(Change.FIRING, 25, T0 + 60_000, since_ms=T0)


def test_a_blip_shorter_than_for_s_never_fires_and_restarts_the_wait() -> None:
    spec = rule(threshold=10, for_s=60)
    seen = run(spec, [(0, 20), (30, 20), (50, 5), (70, 20), (120, 20), (130, 20)])
    assert [(second, t.change) for second, t in seen] == [(130, Change.FIRING)]
    assert seen[0][1].since_ms == T0 + 70_000


def test_no_repeat_within_repeat_s_then_one_reminder_per_interval() -> None:
    spec = rule(threshold=10, repeat_s=300)
    seen = run(spec, [(s, 20) for s in range(0, 700, 10)])
    assert [(second, t.repeat) for second, t in seen] == [(0, False), (300, True), (600, True)]
    assert all(t.since_ms == T0 for _, t in seen)


def test_repeat_s_zero_never_repeats() -> None:
    seen = run(rule(threshold=10), [(s, 20) for s in range(0, 86_400, 600)])
    assert len(seen) == 1


def test_resolved_once_when_the_condition_clears_and_can_fire_again() -> None:
    spec = rule(threshold=10)
    seen = run(spec, [(0, 20), (10, 3), (20, 2), (30, 40)])
    assert [(second, t.change, t.value) for second, t in seen] == [
        (0, Change.FIRING, 20),
        (10, Change.RESOLVED, 3),
        (30, Change.FIRING, 40),
    ]
    assert seen[1][1].since_ms == T0


def test_pending_that_clears_is_not_a_resolution() -> None:
    spec = rule(threshold=10, for_s=60)
    state, _ = step(spec, OK, 20, T0)
    state, transition = step(spec, state, 1, T0 + 1000)
    assert (state, transition) == (OK, None)


def test_no_data_fires_a_less_than_rule() -> None:
    spec = rule(name="tracker-down", op="<", threshold=1, window_s=900)
    _, fired = step(spec, AlertState(), 0.0, T0)
    assert fired is not None and fired.change is Change.FIRING


# -- alerts as messages ----------------------------------------------------------------------


def test_an_alert_message_carries_what_the_dashboard_shows() -> None:
    spec = rule(name="tracker-down", op="<", threshold=1, window_s=900, severity="critical")
    alert = Alert("a.io", spec, Transition(Change.FIRING, 0.0, T0 + 5, T0))
    message = alert.as_message()
    assert message == {
        "type": "alert",
        "site_id": "a.io",
        "rule": "tracker-down",
        "state": "firing",
        "severity": "critical",
        "message": "pageviews < 1 over 15m: pageviews is 0",
        "metric": "pageviews",
        "op": "<",
        "value": 0.0,
        "threshold": 1.0,
        "window_s": 900.0,
        "filters": "",
        "since": T0,
        "at": T0 + 5,
        "repeat": False,
        "gone": False,
    }
    assert alert.text() == (
        "[FIRING] critical · tracker-down on a.io: pageviews < 1 over 15m: pageviews is 0"
    )
    resolved = Alert("a.io", spec, Transition(Change.RESOLVED, 4.0, T0 + 9, T0))
    assert resolved.text().startswith("[RESOLVED] critical · tracker-down on a.io: ")
    assert resolved.message() == "pageviews is 4 again: no longer pageviews < 1 over 15m"


def test_words_for_numbers_and_durations() -> None:
    assert [number(3.0), number(12.3456), number(0.5), number(-2.0), number(0.001234)] == [
        "3",
        "12.35",
        "0.5",
        "-2",
        "0.00123",
    ]
    assert [duration(900), duration(3600), duration(90), duration(172_800), duration(1.5)] == [
        "15m",
        "1h",
        "90s",
        "2d",
        "1.5s",
    ]


# -- planning ---------------------------------------------------------------------------------


def test_rules_sharing_site_window_and_filters_share_one_probe() -> None:
    spike = rule()
    visitors = rule(name="visitors", metric="visitors")
    checkout = rule(name="checkout", filters="page==/checkout")
    quiet = rule(name="quiet", site_id="new.io", op="<", threshold=1, window_s=900)
    groups = plan([spike, visitors, checkout, quiet], ["a.io", "", "b.io", "a.io"])
    assert groups == {
        Probe("a.io", 300.0, ""): [spike, visitors],
        Probe("b.io", 300.0, ""): [spike, visitors],
        Probe("a.io", 300.0, "page==/checkout"): [checkout],
        Probe("b.io", 300.0, "page==/checkout"): [checkout],
        Probe("new.io", 900.0, ""): [quiet],
    }
