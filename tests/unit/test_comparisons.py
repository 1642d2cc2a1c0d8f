"""compare=previous_period | year_over_year | custom: the ranges, checked by hand here."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hitstream.domain.errors import QueryError
from hitstream.domain.stats import Range, build_query, comparison
from hitstream.services.live_views import parse_view


def at(tz: str, year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


NOW = at("UTC", 2026, 3, 15, 12)


def test_year_over_year_is_the_same_local_dates_a_year_earlier() -> None:
    query = build_query(
        site_id="s", now_ms=NOW, period="custom", date_from="2026-03-01", date_to="2026-03-31",
        tz="Europe/Berlin", compare="year_over_year",
    )  # fmt: skip
    # March 2025 in Berlin: the DST change falls on another day, the dates are the same
    assert query.compare == Range(at("Europe/Berlin", 2025, 3, 1), at("Europe/Berlin", 2025, 4, 1))


def test_a_leap_day_compares_with_the_28th() -> None:
    current = Range(at("UTC", 2028, 2, 29), at("UTC", 2028, 3, 1))
    assert comparison("year_over_year", current) == Range(
        at("UTC", 2027, 2, 28), at("UTC", 2027, 3, 1)
    )


def test_custom_comparison_is_whole_days_in_the_zone() -> None:
    current = Range(at("UTC", 2026, 3, 1), at("UTC", 2026, 3, 8))
    got = comparison("custom", current, "Asia/Kathmandu", "2026-01-10", "2026-01-12")
    assert got == Range(at("Asia/Kathmandu", 2026, 1, 10), at("Asia/Kathmandu", 2026, 1, 13))
    assert comparison("previous_period", current) == Range(at("UTC", 2026, 2, 22), current.start)
    assert comparison(None, current) is None


@pytest.mark.parametrize(
    ("compare", "first", "last", "field"),
    [
        ("custom", None, "2026-01-12", "compare_from"),
        ("custom", "2026-01-10", None, "compare_to"),
        ("custom", "2026-01-12", "2026-01-10", "compare_to"),
        ("custom", "2026-13-01", "2026-01-10", "compare_from"),
        ("weekly", None, None, "compare"),
        (None, "2026-01-10", "2026-01-12", "compare"),
    ],
)
def test_bad_comparisons_name_their_parameter(
    compare: str | None, first: str | None, last: str | None, field: str
) -> None:
    with pytest.raises(QueryError) as caught:
        comparison(compare, Range(0, 1), "UTC", first, last)
    assert caught.value.field == field


def test_the_live_view_keeps_its_comparison() -> None:
    key = parse_view(
        {"site_id": "s", "period": "7d", "compare": "custom", "compare_from": "2025-03-01",
         "compare_to": "2025-03-07", "filters": "page=~^/a|^/b"},
        NOW,
    )  # fmt: skip
    assert key.as_dict()["compare"] == "custom"
    assert key.compared(NOW).compare == Range(at("UTC", 2025, 3, 1), at("UTC", 2025, 3, 8))
    assert key.filters == "page=~^/a|^/b"  # one pattern, not two values
    assert parse_view({"site_id": "s"}, NOW).compared(NOW).compare is not None  # the default
    with pytest.raises(QueryError):
        parse_view({"site_id": "s", "compare": "custom"}, NOW)
