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


def at_min(tz: str, year: int, month: int, day: int, hour: int, minute: int) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


@pytest.mark.parametrize(
    ("period", "now", "want"),
    [
        # today until 14:30 (the end of the current half hour) against yesterday until 14:30
        # (it was yesterday from 09:30 to midnight: as long, just before)
        ("day", (2026, 3, 15, 14, 10), ((2026, 3, 14, 0, 0), (2026, 3, 14, 14, 30))),
        ("7d", (2026, 3, 15, 14, 10), ((2026, 3, 2, 0, 0), (2026, 3, 8, 14, 30))),
        ("30d", (2026, 3, 15, 14, 10), ((2026, 1, 15, 0, 0), (2026, 2, 13, 14, 30))),
        ("month", (2026, 3, 15, 14, 10), ((2026, 2, 1, 0, 0), (2026, 2, 15, 14, 30))),
        # the 31st against the end of a shorter month; January against December
        ("month", (2026, 3, 31, 9, 0), ((2026, 2, 1, 0, 0), (2026, 2, 28, 9, 30))),
        ("month", (2026, 1, 20, 9, 0), ((2025, 12, 1, 0, 0), (2025, 12, 20, 9, 30))),
        # over a DST change (Berlin, 29 March 2026): the same wall-clock hours the day before
        ("day", (2026, 3, 30, 8, 0), ((2026, 3, 29, 0, 0), (2026, 3, 29, 8, 30))),
    ],
)
def test_a_period_so_far_compares_with_the_same_part_of_the_one_before(
    period: str,
    now: tuple[int, int, int, int, int],
    want: tuple[tuple[int, int, int, int, int], tuple[int, int, int, int, int]],
) -> None:
    tz = "Europe/Berlin"
    query = build_query(
        site_id="s", now_ms=at_min(tz, *now), period=period, tz=tz, compare="previous_period"
    )
    assert query.compare == Range(at_min(tz, *want[0]), at_min(tz, *want[1]))
    assert query.compare.end <= query.range.start


def test_other_ranges_compare_with_as_long_just_before() -> None:
    query = build_query(
        site_id="s", now_ms=NOW, period="custom", date_from="2026-03-10", date_to="2026-03-12",
        compare="previous_period",
    )  # fmt: skip
    assert query.compare == Range(at("UTC", 2026, 3, 7), at("UTC", 2026, 3, 10))


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
