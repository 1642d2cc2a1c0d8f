"""The real ua-parser adapter and the crawler-list bot detector, on realistic User-Agents."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitstream.domain.pipeline import UserAgentInfo
from hitstream.enrich.bots import BotDetector
from hitstream.enrich.useragent import UserAgentParser

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
)
SAMSUNG_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.28 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
HUMANS = [
    CHROME_WINDOWS,
    SAFARI_IPHONE,
    SAMSUNG_TABLET,
    FIREFOX_LINUX,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/444.0.0.34.111;]",
]


@pytest.fixture(scope="module")
def parser() -> UserAgentParser:
    built = UserAgentParser(cache_size=64)
    built.warm_up()
    return built


@pytest.fixture(scope="module")
def bots(parser: UserAgentParser) -> BotDetector:
    return BotDetector(parser)


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME_WINDOWS, ("Chrome", "120", "Windows", "10", "desktop")),
        (SAFARI_IPHONE, ("Safari", "17", "iOS", "17", "mobile")),
        (SAMSUNG_TABLET, ("Samsung Internet", "23", "Android", "13", "tablet")),
        (FIREFOX_LINUX, ("Firefox", "121", "Linux", "", "desktop")),
        (HUMANS[4], ("Safari", "17", "macOS", "10.15", "desktop")),
        (HUMANS[5], ("Edge", "120", "Windows", "10", "desktop")),
        (HUMANS[6], ("Chrome", "120", "Android", "14", "mobile")),
        (HUMANS[7], ("Facebook", "444", "iOS", "17", "mobile")),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            ("Safari", "17", "iOS", "17", "tablet"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 12; SM-T870) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36",
            ("Chrome", "120", "Android", "12", "tablet"),
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
            "like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
            ("Chrome", "120", "iOS", "17", "mobile"),
        ),
        (
            "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
            "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
            ("Samsung Internet", "4", "Tizen", "6", "other"),
        ),
        (GOOGLEBOT, ("Googlebot", "2", "Other", "", "bot")),
        ("garbage", ("Other", "", "Other", "", "other")),
    ],
)
def test_parse_gives_dashboard_names_major_versions_and_device_class(
    parser: UserAgentParser, user_agent: str, expected: tuple[str, str, str, str, str]
) -> None:
    assert parser.parse(user_agent) == UserAgentInfo(*expected)


def test_parse_is_cached_per_user_agent() -> None:
    parser = UserAgentParser(cache_size=2)
    first = parser.parse(CHROME_WINDOWS)
    assert parser.parse(CHROME_WINDOWS) is first
    assert parser.cache_info() == (1, 1, 1)
    parser.parse(SAFARI_IPHONE)
    parser.parse(FIREFOX_LINUX)
    assert parser.cache_info()[2] == 2  # bounded: the oldest entry went


@pytest.mark.parametrize(
    ("user_agent", "reason"),
    [
        (GOOGLEBOT, "ua_pattern"),
        (BINGBOT, "ua_pattern"),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2)",
            "ua_pattern",
        ),
        ("curl/8.4.0", "http_library"),
        ("python-requests/2.31.0", "http_library"),
        ("python-httpx/0.27.0", "http_library"),
        ("Go-http-client/1.1", "http_library"),
        ("Wget/1.21.4", "http_library"),
        (HEADLESS_CHROME, "headless"),
        (
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 PhantomJS/2.1.1 Safari/538.1",
            "headless",
        ),
        ("", "empty_ua"),
        ("  ", "empty_ua"),
    ],
)
def test_bots_are_named_with_a_reason(bots: BotDetector, user_agent: str, reason: str) -> None:
    assert bots.bot_reason(user_agent) == reason


@pytest.mark.parametrize("user_agent", HUMANS)
def test_real_browsers_are_not_bots(bots: BotDetector, user_agent: str) -> None:
    assert bots.bot_reason(user_agent) is None


def test_allow_headless_lets_only_headless_browsers_through(parser: UserAgentParser) -> None:
    relaxed = BotDetector(parser, allow_headless=True)
    assert relaxed.bot_reason(HEADLESS_CHROME) is None
    assert relaxed.bot_reason(GOOGLEBOT) == "ua_pattern"
    assert relaxed.bot_reason("curl/8.4.0") == "http_library"


def test_every_sample_of_the_crawler_list_is_detected(bots: BotDetector) -> None:
    data = importlib.import_module("crawleruseragents").CRAWLER_USER_AGENTS_DATA
    samples = [sample for entry in data for sample in entry.get("instances", [])]
    assert len(samples) > 1000
    assert [s for s in samples if bots.bot_reason(s) is None] == []
    assert bots.skipped == []


def test_ua_parser_spiders_are_bots_even_off_the_list(parser: UserAgentParser) -> None:
    only_spiders = BotDetector(parser, patterns=[])
    assert only_spiders.bot_reason(GOOGLEBOT) == "spider"
    assert BotDetector(patterns=[]).bot_reason(GOOGLEBOT) is None


def test_list_tags_pick_the_reason_and_bad_patterns_are_skipped() -> None:
    detector = BotDetector(
        patterns=[
            {"pattern": "(?<=x)lookbehind"},
            {"pattern": "ZzFetch/", "tags": ["http-library"]},
            {"pattern": "ZzDriver", "tags": ["browser-automation"]},
            {"pattern": "ZzBot"},
            {"tags": ["no pattern"]},
        ]
    )
    assert detector.skipped == ["(?<=x)lookbehind"]
    assert detector.bot_reason("ZzFetch/1.0") == "http_library"
    assert detector.bot_reason("Mozilla/5.0 ZzDriver") == "headless"
    assert detector.bot_reason("Mozilla/5.0 ZzBot/2") == "ua_pattern"
    assert detector.bot_reason(CHROME_WINDOWS) is None


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_parsers_never_raise(parser: UserAgentParser, bots: BotDetector, text: str) -> None:
    info = parser.parse(text)
    assert info.device in {"desktop", "mobile", "tablet", "bot", "other"}
    reason = bots.bot_reason(text)
    assert reason is None or reason in {
        "ua_pattern",
        "headless",
        "http_library",
        "spider",
        "empty_ua",
    }
