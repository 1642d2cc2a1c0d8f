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


@pytest.mark.parametrize(
    ("first", "last", "want"),
    [
        # the day before holds the spring change (23 h): it started at 23:00 two days back
        ("2026-03-09", "2026-03-09", ((2026, 3, 8), (2026, 3, 9))),
        # the day before holds the autumn change (25 h): it started at 01:00
        ("2026-11-02", "2026-11-02", ((2026, 11, 1), (2026, 11, 2))),
        # March (31 days, one change) against the 31 days before, from midnight
        ("2026-03-01", "2026-03-31", ((2026, 1, 29), (2026, 3, 1))),
    ],
)
def test_a_custom_range_compares_with_as_many_whole_days_before(
    first: str, last: str, want: tuple[tuple[int, int, int], tuple[int, int, int]]
) -> None:
    """A fixed length in milliseconds started an hour off across a DST change."""
    tz = "America/New_York"
    query = build_query(
        site_id="s", now_ms=NOW, period="custom", date_from=first, date_to=last, tz=tz,
        compare="previous_period",
    )  # fmt: skip
    assert query.compare == Range(at(tz, *want[0]), at(tz, *want[1]))


@pytest.mark.parametrize(
    ("first", "last", "want"),
    [
        ((2024, 2, 28), (2024, 2, 29), ((2023, 2, 28), (2023, 3, 1))),  # it was empty
        ((2024, 2, 1), (2024, 2, 29), ((2023, 2, 1), (2023, 3, 1))),  # it lost the 28th
        ((2025, 2, 28), (2025, 3, 1), ((2024, 2, 28), (2024, 2, 29))),  # it took the 29th
        ((2024, 2, 29), (2024, 3, 1), ((2023, 2, 28), (2023, 3, 1))),
    ],
)
def test_a_range_ending_in_february_compares_with_the_same_last_day(
    first: tuple[int, int, int], last: tuple[int, int, int], want: tuple[tuple[int, ...], ...]
) -> None:
    current = Range(at("UTC", *first), at("UTC", *last))
    assert comparison("year_over_year", current) == Range(at("UTC", *want[0]), at("UTC", *want[1]))


def test_a_range_ending_where_a_dst_gap_took_midnight_compares_with_whole_days() -> None:
    """Cairo's clocks went from 00:00 to 01:00 on 26 April 2024: the range's end is 01:00,
    and the year before ended an hour into 26 April 2023."""
    tz = "Africa/Cairo"
    query = build_query(
        site_id="s", now_ms=NOW, period="custom", date_from="2024-04-01", date_to="2024-04-25",
        tz=tz, compare="year_over_year",
    )  # fmt: skip
    assert query.compare == Range(at(tz, 2023, 4, 1), at(tz, 2023, 4, 26))


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


def local_hours(tz: str, day: str) -> list[str]:
    """The hour buckets of one local day, as local wall-clock times with their offsets."""
    from hitstream.domain.stats import StatsQuery, bucket_starts, resolve_period

    query = StatsQuery("s", resolve_period("custom", 0, tz, day, day), interval="hour", tz=tz)
    zone = ZoneInfo(tz)
    return [
        datetime.fromtimestamp(b / 1000, zone).strftime("%H:%M%z") for b in bucket_starts(query)
    ]


def test_hour_buckets_follow_the_local_hours_across_any_dst_change() -> None:
    """Whole hours of absolute time lost the local hour after a 30- or 45-minute change
    (every Lord Howe bucket after it started at :30 local); a change of offset now starts a
    bucket of its own, then the local hours go on."""
    lord_howe = local_hours("Australia/Lord_Howe", "2026-04-05")  # 02:00 +11 -> 01:30 +10:30
    assert lord_howe[:5] == ["00:00+1100", "01:00+1100", "01:30+1030", "02:00+1030", "03:00+1030"]
    assert lord_howe[-1] == "23:00+1030" and len(lord_howe) == 25
    spring = local_hours("Australia/Lord_Howe", "2026-10-04")  # 02:00 +10:30 -> 02:30 +11
    assert spring[1:4] == ["01:00+1030", "02:30+1100", "03:00+1100"] and len(spring) == 24
    chatham = local_hours("Pacific/Chatham", "2026-09-27")  # 02:45 +12:45 -> 03:45 +13:45
    assert chatham[2:5] == ["02:00+1245", "03:45+1345", "04:00+1345"]
    back = local_hours("Pacific/Chatham", "2026-04-05")  # 03:45 +13:45 -> 02:45 +12:45
    assert back[3:6] == ["03:00+1345", "02:45+1245", "03:00+1245"]
    new_york = local_hours("America/New_York", "2026-11-01")  # the repeated hour: twice
    assert new_york[:4] == ["00:00-0400", "01:00-0400", "01:00-0500", "02:00-0500"]
    assert len(new_york) == 25 and len(local_hours("America/New_York", "2026-03-08")) == 23
    assert len(set(local_hours("Asia/Kolkata", "2026-04-05"))) == 24
    # a change off the quarter-hour grid starts its bucket to the second, and the hours
    # after a change to an offset of seconds follow the new clock
    assert local_hours("America/St_Johns", "2010-03-14")[:3] == [
        "00:00-0330",
        "01:01-0230",  # at 00:01 the clocks went to 01:01
        "02:00-0230",
    ]
    assert local_hours("Africa/Monrovia", "1972-01-07")[:2] == ["00:44+0000", "01:00+0000"]
    montevideo = local_hours("America/Montevideo", "1974-01-13")  # its midnight was skipped
    assert montevideo[0] == "01:30-0130"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"date_from": "20260301", "date_to": "2026-03-02"}, "from"),  # ISO basic form
        ({"date_from": "2026-03-01", "date_to": "2026-W10-1"}, "to"),  # an ISO week date
        ({"date_from": "2026-3-1", "date_to": "2026-03-02"}, "from"),
    ],
)
def test_days_are_yyyy_mm_dd(given: dict[str, str], field: str) -> None:
    """Python's ISO reader took ``20260301`` and week dates."""
    with pytest.raises(QueryError) as raised:
        build_query(
            site_id="s", now_ms=NOW, period="custom", date_from=given["date_from"],
            date_to=given["date_to"], tz=given.get("tz"),
        )  # fmt: skip
    assert raised.value.field == field


def test_a_zone_given_must_be_a_place_and_one_stored_is_read_as_it_is() -> None:
    """The zone database answers ``localtime`` (the server's own zone: another server,
    another answer), a rule template, a placeholder and ``posix/``/``right/`` copies: a site
    or a query naming one is refused; a site stored with one before still answers."""
    from hitstream.domain.sites import check_timezone
    from hitstream.domain.stats import check_zone

    assert check_timezone("EST5EDT") == "EST5EDT"  # a legacy name, still a zone of rules
    for name in ("localtime", "posixrules", "Factory", "posix/Europe/Berlin", "right/UTC"):
        with pytest.raises(QueryError) as raised:
            check_timezone(name)
        assert raised.value.field == "timezone"
        with pytest.raises(QueryError) as raised:
            check_zone(name)
        assert raised.value.field == "tz"
    stored = build_query(
        site_id="s", now_ms=NOW, period="custom", date_from="2026-03-01",
        date_to="2026-03-02", tz="Factory",
    )  # fmt: skip
    assert stored.range.end - stored.range.start == 2 * 86_400_000
