"""A seeded model of one website's traffic, for demos, load tests and backfills.

Pure: every draw comes from the ``random.Random`` handed in and every time from a ``now_ms``
handed in, so one seed and one sequence of ``now_ms`` give the same events, byte for byte.

What it models, and why each part is there (each one exercises a part of hitstream):

- pages whose popularity follows a Zipf law (top pages, breakdowns by page);
- visitors, each with one synthetic IPv4 from an address block of a real country (so the
  offline IP→country lookup yields an interesting country breakdown), one real browser
  User-Agent drawn from a weighted table, and a screen width that fits the device;
- visits of a few pageviews with log-normal think times (sessions, bounce rate, duration),
  an entry referrer (search, social, AI assistants, newsletters ...) and sometimes UTM tags;
- custom events, outbound-link clicks, page load times and session-end events.

Events are wire events: the JSON objects a tracker would POST, plus the visitor's ``ip`` and
``user_agent`` kept beside them, because the collector takes those from the HTTP request.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final, Generic, NamedTuple, TypeVar

DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
_T = TypeVar("_T")


class Weighted(Generic[_T]):
    """A weighted table drawn from in O(log n) with one ``rng.random()`` per draw."""

    __slots__ = ("_cum", "_items", "_total")

    def __init__(self, pairs: Sequence[tuple[_T, float]]) -> None:
        if not pairs:
            raise ValueError("a weighted table needs at least one item")
        self._items = [item for item, _ in pairs]
        self._cum: list[float] = []
        total = 0.0
        for _, weight in pairs:
            total += weight
            self._cum.append(total)
        self._total = total

    def pick(self, rng: random.Random) -> _T:
        return self._items[bisect(self._cum, rng.random() * self._total)]


class LogNormal:
    """Log-normal integer draws, clamped to [low, high], from a table of 2,048 quantiles.

    One ``rng.random()`` per draw, several times faster than ``lognormvariate``; the table's
    granularity (1/2048 of probability) is far finer than synthetic timings need.
    """

    __slots__ = ("_table",)
    STEPS: Final = 2048

    def __init__(self, median: float, sigma: float, *, low: int, high: int) -> None:
        dist = NormalDist(math.log(median), sigma)
        self._table = [
            min(high, max(low, int(math.exp(dist.inv_cdf((i + 0.5) / self.STEPS)))))
            for i in range(self.STEPS)
        ]

    def draw(self, rng: random.Random) -> int:
        return self._table[int(rng.random() * self.STEPS)]


# (country, weight, /16 blocks that the bundled IP→country table places wholly in it)
_COUNTRY_BLOCKS: Final = (
    ("US", 30.0, ("3.0", "24.0", "8.6", "64.233", "71.0", "98.0")),
    ("DE", 8.0, ("2.160", "84.128", "91.0", "93.192")),
    ("GB", 7.0, ("2.96", "2.120", "5.64", "86.128", "90.192")),
    ("IN", 7.0, ("14.96", "49.32", "117.192", "106.192")),
    ("FR", 4.0, ("2.3", "90.0", "88.160", "82.64")),
    ("CA", 4.0, ("24.36", "70.24", "99.224")),
    ("BR", 4.0, ("143.106", "189.0", "191.32", "201.0")),
    ("NL", 3.0, ("2.16", "31.20", "84.80")),
    ("JP", 3.0, ("1.72", "126.0", "153.128")),
    ("ES", 2.5, ("2.136", "83.32", "88.0")),
    ("IT", 2.5, ("2.32", "79.0", "93.32")),
    ("AU", 2.5, ("1.120", "101.160", "120.144")),
    ("PL", 2.0, ("31.60", "83.0", "89.64")),
    ("SE", 1.5, ("2.64", "78.64", "85.224")),
    ("KR", 1.5, ("1.96", "175.192", "211.36")),
    ("MX", 1.5, ("148.201", "187.128", "189.128")),
    ("CH", 1.2, ("46.126", "83.76", "85.0")),
    ("SG", 1.2, ("8.128", "116.86", "175.156")),
    ("ID", 1.2, ("36.64", "36.65", "110.136")),
    ("ZA", 1.0, ("41.0", "105.224", "197.80")),
    ("TR", 1.0, ("5.24", "78.160", "88.224")),
    ("AR", 1.0, ("152.168", "181.0", "190.16")),
    ("IE", 1.0, ("31.88", "86.40", "89.100")),
    ("VN", 1.0, ("14.160", "113.160", "171.224")),
    ("NG", 0.8, ("102.88", "105.112", "197.210")),
)
COUNTRY_BLOCKS: Final = {country: blocks for country, _, blocks in _COUNTRY_BLOCKS}

_CHROME = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0"
_SAFARI = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
_WIN, _MAC = "Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7"
_IOS18, _IOS17 = "CPU iPhone OS 18_1 like Mac OS X", "CPU iPhone OS 17_6 like Mac OS X"
_FF = "Gecko/20100101 Firefox/133.0"
# (user agent, screen table, weight): shares roughly like a tech site's in 2025
# fmt: off
USER_AGENTS: Final = (
    (f"Mozilla/5.0 ({_WIN}) {_CHROME} Safari/537.36", "desktop", 22.0),
    (f"Mozilla/5.0 ({_MAC}) {_CHROME} Safari/537.36", "desktop", 9.0),
    (f"Mozilla/5.0 (X11; Linux x86_64) {_CHROME} Safari/537.36", "desktop", 3.0),
    (f"Mozilla/5.0 ({_WIN}) {_CHROME} Safari/537.36 Edg/131.0.0.0", "desktop", 5.0),
    (f"Mozilla/5.0 ({_WIN}; rv:133.0) {_FF}", "desktop", 4.0),
    (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) {_FF}", "desktop", 1.5),
    (f"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) {_FF}", "desktop", 1.5),
    (f"Mozilla/5.0 ({_MAC}) {_SAFARI} Version/18.1 Safari/605.1.15", "desktop", 6.0),
    (f"Mozilla/5.0 (iPhone; {_IOS18}) {_SAFARI} Version/18.1 Mobile/15E148 Safari/604.1",
     "iphone", 12.0),
    (f"Mozilla/5.0 (iPhone; {_IOS17}) {_SAFARI} Version/17.6 Mobile/15E148 Safari/604.1",
     "iphone", 4.0),
    (f"Mozilla/5.0 (iPhone; {_IOS18}) {_SAFARI} CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
     "iphone", 2.0),
    (f"Mozilla/5.0 (Linux; Android 10; K) {_CHROME} Mobile Safari/537.36", "android", 14.0),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", "android", 3.0),
    ("Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0", "android", 0.7),
    (f"Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) {_SAFARI} Version/17.6 Mobile/15E148 "
     "Safari/604.1", "ipad", 2.0),
    (f"Mozilla/5.0 (Linux; Android 13; SM-X200) {_CHROME} Safari/537.36", "android_tablet", 1.0),
)
# fmt: on
BOT_USER_AGENTS: Final = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "python-requests/2.32.3",
)
# CSS pixel widths by screen table; the device kind the processor should infer is the key's
_SCREENS: Final = {
    "desktop": ((1920, 35), (1536, 12), (1366, 10), (1440, 10), (2560, 8), (1280, 6), (1680, 5)),
    "iphone": ((390, 30), (393, 20), (430, 15), (375, 15), (414, 12), (402, 8)),
    "android": ((412, 35), (360, 25), (393, 20), (384, 10), (448, 5)),
    "ipad": ((820, 35), (810, 25), (768, 20), (1024, 20)),
    "android_tablet": ((800, 50), (1280, 30), (962, 20)),
}
DEVICE_OF_SCREEN: Final = {
    "desktop": "desktop",
    "iphone": "mobile",
    "android": "mobile",
    "ipad": "tablet",
    "android_tablet": "tablet",
}
# (referrer or "" for direct, (utm_source, utm_medium, utm_campaign) or None, weight); search
# engines and most sites send only their origin, reddit's thread URLs get a random thread id
_SOURCES: Final = (
    ("", None, 33.0),
    ("https://www.google.com/", None, 24.0),
    ("https://www.google.com/", ("google", "cpc", "brand-search"), 3.0),
    ("https://www.bing.com/", None, 4.0),
    ("https://duckduckgo.com/", None, 3.0),
    ("https://t.co/", None, 3.0),
    ("https://t.co/", ("twitter", "social", "launch-week"), 1.0),
    ("https://l.facebook.com/", None, 2.0),
    ("https://www.linkedin.com/", None, 2.0),
    ("https://www.linkedin.com/", ("linkedin", "cpc", "b2b-retarget"), 1.0),
    ("https://www.reddit.com/r/webdev/comments/", None, 3.0),
    ("https://news.ycombinator.com/", None, 4.0),
    ("https://chatgpt.com/", None, 3.0),
    ("https://www.perplexity.ai/", None, 1.5),
    ("https://github.com/", None, 2.0),
    ("", ("newsletter", "email", "weekly-digest"), 3.0),
    ("https://tldr.tech/", ("tldr", "newsletter", "issue-412"), 1.0),
)
_CORE_PAGES: Final = (
    ("/", "Privacy-first analytics"),
    ("/pricing", "Pricing"),
    ("/blog", "Blog"),
    ("/docs", "Documentation"),
    ("/features", "Features"),
    ("/signup", "Create your account"),
    ("/login", "Log in"),
    ("/about", "About us"),
    ("/changelog", "Changelog"),
    ("/integrations", "Integrations"),
    ("/contact", "Contact"),
    ("/security", "Security"),
    ("/careers", "Careers"),
    ("/privacy", "Privacy policy"),
    ("/terms", "Terms of service"),
)
_BLOG_TOPICS: Final = (
    "privacy-first-analytics", "cookie-banners", "utm-tracking", "bounce-rate", "gdpr",
    "core-web-vitals", "event-pipelines", "duckdb", "postgres-partitioning", "self-hosting",
    "kafka-consumer-groups", "websocket-dashboards",
)  # fmt: skip
_BLOG_ANGLES: Final = ("explained", "in-practice", "at-scale", "a-checklist", "lessons-learned")
_DOC_SECTIONS: Final = ("getting-started", "tracker", "api", "self-hosting", "integrations")
_DOC_TOPICS: Final = (
    "overview", "installation", "configuration", "custom-events", "goals", "filters",
    "troubleshooting",
)  # fmt: skip
_OUTBOUND: Final = (
    "https://github.com/hitstream/hitstream",
    "https://x.com/hitstream",
    "https://www.linkedin.com/company/hitstream",
    "https://discord.gg/hitstream",
    "https://status.hitstream.example/",
)


@dataclass(frozen=True, slots=True)
class Page:
    path: str
    title: str


@dataclass(frozen=True, slots=True)
class Visitor:
    """One synthetic person on one device: the same IP and UA on every visit (one hash)."""

    ip: str
    user_agent: str
    device: str
    """``desktop``, ``mobile``, ``tablet`` or ``bot``."""
    screen_width: int | None
    country: str
    """The country whose address block ``ip`` was drawn from."""


class WireEvent(NamedTuple):
    """One event as a tracker would POST it, with the request headers it needs beside it.

    A tuple, not a frozen dataclass: it is built once per event and 3x cheaper to build.
    """

    body: dict[str, object]
    ip: str
    user_agent: str
    timestamp: int


def _title(slug: str) -> str:
    return slug.replace("-", " ").capitalize()


def build_pages(count: int, rng: random.Random) -> list[Page]:
    """``count`` pages in popularity order: the core pages, then docs and posts mixed.

    Past the combinations of the built-in word lists, numbered posts fill the rest.
    """
    if count < 1:
        raise ValueError("a site needs at least one page")
    extra = [
        Page(f"/blog/{topic}-{angle}", f"{_title(topic)}: {angle.replace('-', ' ')}")
        for topic in _BLOG_TOPICS
        for angle in _BLOG_ANGLES
    ]
    extra += [
        Page(f"/docs/{section}/{topic}", f"{_title(topic)} · {_title(section)}")
        for section in _DOC_SECTIONS
        for topic in _DOC_TOPICS
    ]
    rng.shuffle(extra)
    pages = [Page(path, title) for path, title in _CORE_PAGES] + extra
    pages += [Page(f"/blog/notes-{n}", f"Notes #{n}") for n in range(1, count - len(pages) + 1)]
    return pages[:count]


def weekday(ms: int) -> int:
    """Monday is 0; 1970-01-01 was a Thursday."""
    return (ms // DAY_MS + 3) % 7


# relative traffic by UTC hour: low at night over Europe and the Americas, high 13-17 UTC
HOURLY_SHAPE: Final = (
    0.35, 0.28, 0.24, 0.22, 0.24, 0.32, 0.45, 0.62, 0.80, 0.92, 1.00, 1.05,
    1.10, 1.18, 1.22, 1.22, 1.15, 1.05, 0.95, 0.85, 0.75, 0.65, 0.55, 0.45,
)  # fmt: skip
WEEKLY_SHAPE: Final = (1.08, 1.12, 1.12, 1.10, 1.00, 0.78, 0.80)  # Monday first, mean ~1


class TrafficModel:
    """The traffic of one site; see the module docstring. Not thread-safe (one rng)."""

    def __init__(
        self,
        site_id: str,
        rng: random.Random,
        *,
        pages: int = 40,
        hostname: str | None = None,
        zipf_s: float = 1.1,
        visitors: int = 5000,
        returning_share: float = 0.3,
        bot_share: float = 0.0,
        client_event_ids: bool = False,
        engagement: bool = False,
    ) -> None:
        """``engagement``: each page a person leaves also sends the tracker's ``engagement``
        event (time visible, deepest scroll), drawn from a second generator derived from
        ``rng``'s state, so every other event is the same with it or without it."""
        if not 0.0 <= bot_share <= 1.0 or not 0.0 <= returning_share <= 1.0:
            raise ValueError("bot_share and returning_share are fractions between 0 and 1")
        self.site_id = site_id
        self.rng = rng
        self.hostname = hostname or (site_id if "." in site_id else f"{site_id}.example")
        self.pages = build_pages(pages, rng)
        self._page_table = Weighted(
            [(rank, 1.0 / (rank + 1) ** zipf_s) for rank in range(len(self.pages))]
        )
        brand = self.hostname.split(".")[0].capitalize()
        self._urls = [f"https://{self.hostname}{page.path}" for page in self.pages]
        self._titles = [f"{page.title} · {brand}" for page in self.pages]
        self._countries = Weighted([((c, blocks), w) for c, w, blocks in _COUNTRY_BLOCKS])
        self._agents = Weighted([((ua, screen), w) for ua, screen, w in USER_AGENTS])
        self._screens = {key: Weighted(table) for key, table in _SCREENS.items()}
        self._sources = Weighted([((ref, utm), w) for ref, utm, w in _SOURCES])
        self._pool: list[tuple[Visitor, int]] = []
        self._pool_size = max(1, visitors)
        self._returning_share = returning_share
        self._bot_share = bot_share
        self._event_ids = client_event_ids
        self._engagement = random.Random(hash(rng.getstate())) if engagement else None
        self._pending: list[WireEvent] = []
        # think time before the next page: median 25 s; load time: 0.8 s desktop, 1.5 s phone
        self._think = LogNormal(25_000, 1.0, low=2_000, high=600_000)
        self._load_desktop = LogNormal(800, 0.55, low=40, high=60_000)
        self._load_mobile = LogNormal(1_500, 0.55, low=40, high=60_000)

    # -- visitors -------------------------------------------------------------------------

    def _ip(self, blocks: tuple[str, ...]) -> str:
        draw = self.rng.random
        return f"{blocks[int(draw() * len(blocks))]}.{int(draw() * 256)}.{1 + int(draw() * 254)}"

    def new_visitor(self) -> Visitor:
        country, blocks = self._countries.pick(self.rng)
        user_agent, screen = self._agents.pick(self.rng)
        width = self._screens[screen].pick(self.rng)
        return Visitor(self._ip(blocks), user_agent, DEVICE_OF_SCREEN[screen], width, country)

    def _visitor_for(self, start_ms: int, end_ms: int) -> Visitor:
        """A returning visitor whose last visit ended 30+ min ago, or a new one (pooled)."""
        rng = self.rng
        pool = self._pool
        if pool and rng.random() < self._returning_share:
            slot = rng.randrange(len(pool))
            visitor, last_end = pool[slot]
            if last_end + 30 * 60_000 <= start_ms:
                pool[slot] = (visitor, end_ms)
                return visitor
        visitor = self.new_visitor()
        if len(pool) < self._pool_size:
            pool.append((visitor, end_ms))
        else:
            pool[rng.randrange(len(pool))] = (visitor, end_ms)
        return visitor

    # -- visits ---------------------------------------------------------------------------

    def _plan(self) -> tuple[list[tuple[int, int]], int]:
        """Page numbers with offsets from the visit's start, and the time after the last."""
        rng = self.rng
        count = 1 if rng.random() < 0.42 else min(12, 2 + int(rng.expovariate(1 / 2.2)))
        pick = self._page_table.pick
        think = self._think.draw
        plan: list[tuple[int, int]] = []
        offset = 0
        page = pick(rng)
        for _ in range(count):
            plan.append((offset, page))
            offset += think(rng)
            for _ in range(4):  # the next page is another page (rarely a reload)
                nxt = pick(rng)
                if nxt != page:
                    break
            page = nxt
        return plan, think(rng) // 2

    def visit(self, start_ms: int) -> list[WireEvent]:
        """One visit whose first pageview is at ``start_ms``; events in time order."""
        return self._visit(start_ms, ending=False)

    def recent_visit(self, now_ms: int) -> list[WireEvent]:
        """One visit that has just ended: no event after ``now_ms``, the last one close to it."""
        return self._visit(now_ms, ending=True)

    def next_events(self, now_ms: int, count: int) -> list[WireEvent]:
        """Exactly ``count`` events of recent visits; a visit may continue in the next call."""
        out = self._pending
        while len(out) < count:
            out.extend(self.recent_visit(now_ms))
        self._pending = out[count:]
        return out[:count]

    def _visit(self, at_ms: int, *, ending: bool) -> list[WireEvent]:
        rng = self.rng
        if self._bot_share and rng.random() < self._bot_share:
            ua = BOT_USER_AGENTS[rng.randrange(len(BOT_USER_AGENTS))]
            bot = Visitor(self._ip(COUNTRY_BLOCKS["US"]), ua, "bot", None, "US")
            pages = len(self.pages)
            plan = [(i * 1500, int(rng.random() * pages)) for i in range(1 + int(rng.random() * 3))]
            start_ms = at_ms - plan[-1][0] if ending else at_ms
            return self._events(bot, start_ms, plan, 0)
        plan, tail = self._plan()
        span = plan[-1][0] + tail
        start_ms = at_ms - span if ending else at_ms
        return self._events(self._visitor_for(start_ms, start_ms + span), start_ms, plan, tail)

    def _events(
        self, visitor: Visitor, start_ms: int, plan: list[tuple[int, int]], tail: int
    ) -> list[WireEvent]:
        """The events of one planned visit; none later than ``start_ms`` + last offset + tail."""
        rng = self.rng
        site_id = self.site_id
        if visitor.device == "bot":
            return [
                self._wire(visitor, {"site_id": site_id, "type": "pageview",
                                     "url": self._urls[page], "title": self._titles[page]},
                           start_ms + offset)
                for offset, page in plan
            ]  # fmt: skip
        referrer, utm = self._sources.pick(rng)
        if referrer.endswith("/comments/"):
            referrer += f"{rng.getrandbits(30):x}/"
        load = (self._load_desktop if visitor.device == "desktop" else self._load_mobile).draw
        events: list[WireEvent] = []
        previous_url = ""
        for index, (offset, page) in enumerate(plan):
            at = start_ms + offset
            url = self._urls[page]
            body: dict[str, object] = {
                "site_id": site_id,
                "type": "pageview",
                "url": url,
                "title": self._titles[page],
                "screen_width": visitor.screen_width,
                "load_time_ms": load(rng),
            }
            if index == 0:
                if utm is not None:
                    body["url"] = url + _utm_query(rng, *utm)
                if referrer:
                    body["referrer"] = referrer
            else:
                body["referrer"] = previous_url  # browsers send the previous page: internal
            previous_url = url
            events.append(self._wire(visitor, body, at))
            room = plan[index + 1][0] - offset if index + 1 < len(plan) else tail
            events.extend(self._extras(visitor, self.pages[page].path, url, at, room))
            if self._engagement is not None:
                events.extend(self._engaged(visitor, url, at, room))
        if rng.random() < 0.35:
            at = start_ms + plan[-1][0] + tail
            body = {"site_id": site_id, "type": "session", "url": previous_url}
            body["duration_ms"] = at - start_ms
            events.append(self._wire(visitor, body, at))
        return events

    def _extras(self, visitor: Visitor, path: str, url: str, at: int, room: int) -> list[WireEvent]:
        """Conversions and outbound clicks on a page, within ``room`` ms after it loads."""
        rng = self.rng
        extras: list[dict[str, object]] = []
        roll = rng.random()
        custom: tuple[str, dict[str, object]] | None = None
        if path == "/signup" and roll < 0.35:
            custom = ("signup", {"plan": ("free", "pro", "team")[rng.randrange(3)]})
        elif path == "/pricing" and roll < 0.04:
            plan_name, amount = (("pro", 29.0), ("team", 99.0))[rng.randrange(2)]
            custom = ("purchase", {"plan": plan_name, "amount": amount, "currency": "USD"})
        elif path.startswith("/docs/") and roll < 0.06:
            os_name = ("linux", "macos", "windows")[rng.randrange(3)]
            custom = ("download", {"file": f"hitstream-1.4.2-{os_name}.tar.gz", "os": os_name})
        if custom is not None:
            extras.append({"type": "custom", "name": custom[0], "props": custom[1]})
        if rng.random() < 0.07:
            target = _OUTBOUND[rng.randrange(len(_OUTBOUND))]
            extras.append({"type": "click", "name": "outbound", "props": {"url": target}})
        if not extras:
            return []
        times = sorted(at + 1 + rng.randrange(max(1, room - 1)) for _ in extras)
        return [
            self._wire(visitor, {"site_id": self.site_id, "url": url} | extra, when)
            for when, extra in zip(times, extras, strict=True)
        ]

    def _engaged(self, visitor: Visitor, url: str, at: int, room: int) -> list[WireEvent]:
        """The tracker's engagement event when the page is left (``room`` ms after it loaded,
        just before the next page): most of that time visible, a scroll depth that grows
        with it; now and then none (the tab was closed before it could be sent)."""
        rng = self._engagement
        if rng is None or rng.random() < 0.1:
            return []
        visible = int(room * (0.45 + 0.55 * rng.random()))
        depth = min(100, int(15 + 85 * rng.random() * min(1.0, visible / 40_000 + 0.3)))
        body: dict[str, object] = {
            "site_id": self.site_id,
            "type": "engagement",
            "url": url,
            "engaged_ms": visible,
            "scroll_depth": depth,
        }
        return [self._wire(visitor, body, at + max(0, room - 1))]

    def _wire(self, visitor: Visitor, body: dict[str, object], at: int) -> WireEvent:
        body["timestamp"] = at
        if self._event_ids:
            body["event_id"] = f"{self.rng.getrandbits(128):032x}"
        return WireEvent(body, visitor.ip, visitor.user_agent, at)

    # -- backfill -------------------------------------------------------------------------

    def rate(self, events_per_day: float, at_ms: int) -> float:
        """Events a second at ``at_ms`` in ``history``'s rhythm (its hour of the day and day
        of the week), ``events_per_day`` being the weekly mean: live traffic that goes on
        where the history stops (the demo's ran at 170 times its history)."""
        mean_shape = sum(HOURLY_SHAPE) / 24
        shape = HOURLY_SHAPE[at_ms // HOUR_MS % 24] * WEEKLY_SHAPE[weekday(at_ms)]
        return events_per_day / 86_400 * shape / mean_shape

    def history(self, days: float, events_per_day: int, now_ms: int) -> Iterator[WireEvent]:
        """Events in ``[now_ms - days, now_ms)`` with a daily and a weekly rhythm.

        ``events_per_day`` is the mean over a week (weekdays get more, weekends less).
        Hour by hour, oldest first; events are sorted by time within each hour of visit
        starts, so the stream is nearly (not strictly) time-ordered. Timestamps are older
        than the collector accepts: this is for a trusted backfill path.
        """
        if days <= 0 or events_per_day < 0:
            raise ValueError("history needs a positive number of days and events_per_day >= 0")
        start = now_ms - int(days * DAY_MS)
        hour = start - start % HOUR_MS
        while hour < now_ms:
            lo, hi = max(hour, start), min(hour + HOUR_MS, now_ms)
            budget = self.rate(events_per_day, hour) * (hi - lo) / 1000
            budget = int(budget) + (1 if self.rng.random() < budget % 1 else 0)
            chunk: list[WireEvent] = []
            counted = 0  # engagement events ride along: the budget is of the others
            while counted < budget:
                visit = self.visit(lo + self.rng.randrange(hi - lo))
                kept = [event for event in visit if event.timestamp < now_ms]
                chunk.extend(kept)
                counted += sum(1 for event in kept if event.body["type"] != "engagement")
            chunk.sort(key=lambda event: event.timestamp)
            yield from chunk
            hour += HOUR_MS


def _utm_query(rng: random.Random, source: str, medium: str, campaign: str) -> str:
    query = f"?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}"
    if source == "google" and medium == "cpc":
        query += f"&gclid=Cj0KCQ{rng.getrandbits(96):024x}"
    return query
