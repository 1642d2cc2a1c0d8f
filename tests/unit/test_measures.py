"""The stats rules every store and the live channel share: property text, filters, metrics."""

from __future__ import annotations

import pytest

from hitstream.domain.errors import QueryError
from hitstream.domain.measures import (
    check_filters,
    check_metrics,
    check_property,
    metric_values,
    percentile_cont,
    prop_text,
)
from hitstream.domain.stats import Filter
from hitstream.services.live_client import event_matches


@pytest.mark.parametrize(
    ("value", "text"),
    [("pro", "pro"), (True, "true"), (False, "false"), (3, "3"), (2.5, "2.5"), (None, "")],
)
def test_prop_text_is_the_canonical_text(value: object, text: str) -> None:
    assert prop_text(value) == text


@pytest.mark.parametrize(
    ("flt", "value", "passes"),
    [
        (Filter("page", "==", ("/a", "/b")), "/b", True),
        (Filter("page", "==", ("/a", "/b")), "/c", False),
        (Filter("page", "!=", ("/a",)), "/a", False),
        (Filter("page", "!=", ("/a",)), "/b", True),
        (Filter("page", "~", ("BLOG",)), "/my-Blog/post", True),
        (Filter("page", "~", ("shop", "cart")), "/blog", False),
        (Filter("entry_page", "!=", ("/a",)), None, False),  # a visit without a row
        (Filter("entry_page", "==", ("",)), None, False),
    ],
)
def test_a_filter_matches_a_value(flt: Filter, value: str | None, passes: bool) -> None:
    assert flt.matches(value) is passes


def test_the_live_channel_filters_with_the_same_rules() -> None:
    event = {"path": "/pricing", "country": "DE", "props": {"plan": "pro", "trial": True}}
    assert event_matches(event, (Filter("page", "~", ("PRIC",)),))
    assert not event_matches(event, (Filter("country", "!=", ("DE",)),))
    assert event_matches(event, (Filter("prop:trial", "==", ("true",)),))
    assert event_matches(event, (Filter("prop:missing", "==", ("",)),))
    assert not event_matches(event, (Filter("prop:plan", "==", ("free",)),))
    # a property the live message does not carry cannot be checked: the event passes
    assert event_matches(event, (Filter("utm_source", "==", ("nope",)),))


def test_checks_name_the_field() -> None:
    with pytest.raises(QueryError) as caught:
        check_metrics(("visitors", "nope"))
    assert caught.value.field == "metrics"
    with pytest.raises(QueryError) as caught:
        check_property("prop:")
    assert caught.value.field == "property"
    with pytest.raises(QueryError) as caught:
        check_filters((Filter("page", "<", ("x",)),))
    assert (caught.value.field, caught.value.reason) == ("filters", "unknown operator '<'")
    check_filters((Filter("prop:plan", "~", ("p",)),))


def test_percentile_cont_interpolates_like_sql() -> None:
    assert percentile_cont([], 0.5) == 0.0
    assert percentile_cont([10], 0.95) == 10.0
    assert percentile_cont([10, 20, 30, 40], 0.5) == 25.0  # halfway between 20 and 30
    assert percentile_cont([0, 100], 0.95) == 95.0


def test_metric_values_divide_exact_integers() -> None:
    values = metric_values(
        ("bounce_rate", "visit_duration", "views_per_visit", "visits"),
        visitors=3,
        visits=4,
        pageviews=10,
        events=12,
        measured=3,
        bounces=1,
        duration_ms=9_000,
        p50=0.0,
        p95=0.0,
    )
    assert values == {
        "bounce_rate": 100 / 3,
        "visit_duration": 3.0,
        "views_per_visit": 2.5,
        "visits": 4.0,
    }
    nothing = metric_values(
        ("bounce_rate", "views_per_visit"),
        visitors=0,
        visits=0,
        pageviews=0,
        events=0,
        measured=0,
        bounces=0,
        duration_ms=0,
        p50=0.0,
        p95=0.0,
    )
    assert nothing == {"bounce_rate": 0.0, "views_per_visit": 0.0}
