"""Bot detection by User-Agent: the crawler-user-agents list, automation markers, ua-parser spiders.

All patterns (about 1,500 from the ``crawler-user-agents`` package, plus a few of our own) are
compiled once into ONE multi-pattern matcher on Rust's regex engine (ua-parser-rs's extractor,
which pre-filters on literals), because Python's ``re`` walks a 1,500-way alternation branch by
branch: ~400 µs per UA against ~2 µs. The first pattern that matches names the reason:

- ``headless``: browser automation (HeadlessChrome, PhantomJS, Puppeteer, Playwright, Selenium
  and the list's ``browser-automation`` tag); skipped with ``allow_headless=True`` so our own
  browser tests and demos, which drive headless Chromium, are counted;
- ``http_library``: HTTP clients and command-line tools (curl, Wget, python-requests, httpx,
  aiohttp, Go-http-client, okhttp, axios, node-fetch, Java ... and the ``http-library`` tag);
- ``ua_pattern``: any other pattern of the list (search engines, SEO tools, monitors, AI
  crawlers, link previews ...);
- ``spider``: ua-parser's device family Spider, when a ``UserAgentParser`` is given;
- ``empty_ua``: an empty or blank User-Agent.

A pattern that Rust's engine cannot compile (look-around, back-references) is left out rather
than failing start-up; ``skipped`` lists them. Results are cached per UA (LRU, thread-safe).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Final

import ua_parser_rs

from hitstream.domain.pipeline import UserAgentParser

DEFAULT_CACHE_SIZE: Final = 10_000
HEADLESS: Final = "headless"
HTTP_LIBRARY: Final = "http_library"
UA_PATTERN: Final = "ua_pattern"
SPIDER: Final = "spider"
EMPTY_UA: Final = "empty_ua"

_OUR_HEADLESS: Final = (
    r"Headless",
    r"PhantomJS",
    r"SlimerJS",
    r"(?i)puppeteer",
    r"(?i)playwright",
    r"(?i)selenium",
    r"(?i)webdriver",
    r"HtmlUnit",
    r"jsdom/",
)
_OUR_HTTP: Final = (
    r"(?i)^curl/",
    r"(?i)^wget/",
    r"(?i)python-requests",
    r"(?i)python-httpx",
    r"(?i)python-urllib",
    r"(?i)aiohttp",
    r"(?i)^Go-http-client",
    r"(?i)^okhttp",
    r"(?i)^axios/",
    r"(?i)node-fetch",
    r"^undici",
    r"^Java/",
    r"^Apache-HttpClient",
    r"^libwww-perl",
    r"^Ruby",
    r"^Faraday",
    r"^Dart/",
    r"^reqwest",
    r"^HTTPie/",
    r"^PostmanRuntime/",
    r"^Scrapy/",
)
_TAG_REASONS: Final = {"browser-automation": HEADLESS, "http-library": HTTP_LIBRARY}

Rule = tuple[str, str]
"""(regular expression, reason)."""


def _package_rules() -> list[Rule]:
    # Imported here, not at module level: the package parses its 0.5 MB JSON on import. It has
    # no type information, so each entry is checked as it is read.
    data: object = importlib.import_module("crawleruseragents").CRAWLER_USER_AGENTS_DATA
    return list(_rules_from(data if isinstance(data, list) else []))


def _rules_from(entries: Iterable[object]) -> Iterable[Rule]:
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("pattern"), str):
            continue
        tags = entry.get("tags")
        reasons = [_TAG_REASONS[t] for t in tags or () if t in _TAG_REASONS]
        yield entry["pattern"], reasons[0] if reasons else UA_PATTERN


def _compile(rules: Sequence[Rule]) -> tuple[ua_parser_rs.UserAgentExtractor, list[str]]:
    """One matcher for all rules; the reason is the matcher's "family" replacement."""
    try:
        return ua_parser_rs.UserAgentExtractor(_as_parsers(rules)), []
    except ValueError:
        pass
    kept: list[Rule] = []
    skipped: list[str] = []
    for rule in rules:
        try:
            ua_parser_rs.UserAgentExtractor(_as_parsers([rule]))
        except ValueError:
            skipped.append(rule[0])
        else:
            kept.append(rule)
    return ua_parser_rs.UserAgentExtractor(_as_parsers(kept)), skipped


def _as_parsers(rules: Iterable[Rule]) -> list[ua_parser_rs.UAParser]:
    return [(pattern, reason, None, None, None, None) for pattern, reason in rules]


class BotDetector:
    """The domain's ``BotDetector`` over crawler-user-agents, markers and ua-parser's spiders.

    Pass the processor's ``UserAgentParser`` as ``user_agents`` to add ua-parser's Spider
    check; it shares that parser's cache, so ``put_user_agent`` then costs a lookup.

    ``patterns`` replaces the package's list (entries shaped like its JSON: ``pattern`` and
    optional ``tags``), for tests; our own markers are always added.
    """

    def __init__(
        self,
        user_agents: UserAgentParser | None = None,
        *,
        allow_headless: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
        patterns: Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        listed = _package_rules() if patterns is None else list(_rules_from(patterns))
        ours = [(p, HEADLESS) for p in _OUR_HEADLESS] + [(p, HTTP_LIBRARY) for p in _OUR_HTTP]
        rules = ours + listed
        # Automation first, then HTTP libraries, so the most specific reason wins.
        order = {HEADLESS: 0, HTTP_LIBRARY: 1}
        rules.sort(key=lambda rule: order.get(rule[1], 2))
        if allow_headless:
            rules = [rule for rule in rules if rule[1] != HEADLESS]
        self._matcher, self.skipped = _compile(rules)
        self._user_agents = user_agents
        self._cached = lru_cache(maxsize=cache_size)(self._reason_uncached)

    def bot_reason(self, user_agent: str) -> str | None:
        return self._cached(user_agent)

    def warm_up(self) -> None:
        """Run the matcher once so its lazily built automata exist before traffic."""
        self._matcher.extract("Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0")

    def _reason_uncached(self, user_agent: str) -> str | None:
        if not user_agent or user_agent.isspace():
            return EMPTY_UA
        found = self._matcher.extract(user_agent)
        if found is not None:
            return found.family
        if self._user_agents is not None and self._user_agents.parse(user_agent).device == "bot":
            return SPIDER
        return None
