"""Browser, OS and device class from a User-Agent, over ua-parser's Rust resolver, cached.

Names are the ones people expect to see on a dashboard, one per product whatever the device:
the device column already says mobile or tablet, so ua-parser's "Mobile Safari", "Chrome
Mobile", "Chrome Mobile iOS", "Firefox Mobile", "Firefox iOS", "Edge Mobile" and "Opera Mobile"
are folded into Safari, Chrome, Firefox, Edge and Opera. "Mac OS X" is shown as macOS, "Chrome
OS" as ChromeOS and the Linux distributions (Ubuntu, Fedora ...) as Linux. Versions are the
major number only ("120"), except macOS 10.x which keeps its minor ("10.15") because every
major release of it is "10". Anything ua-parser does not know is "Other" with no version.

Device classes, first match wins: ``bot`` (ua-parser's Spider family), ``other`` (TVs, game
consoles, set-top boxes), ``tablet`` (iPad, Kindle, ua-parser's tablet brands, a UA saying
"Tablet", or Android without "Mobile"), ``mobile`` (iPhone, iPod, a mobile OS, or "Mobi" in
the UA), ``desktop`` (a desktop OS), else ``other``. An iPad in Safari's default desktop mode
sends a Mac UA and counts as desktop: the UA does not say otherwise.

Guarantees: ``parse`` never raises on any string and is thread-safe; results of the last
``cache_size`` distinct UAs are kept (LRU), so a busy site costs one dictionary lookup per event.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from ua_parser import OS, Device, Domain, UserAgent, load_lazy_builtins
from ua_parser.regex import Resolver

from hitstream.domain.pipeline import UserAgentInfo

DEFAULT_CACHE_SIZE: Final = 10_000
UNKNOWN: Final = "Other"
_BROWSERS: Final = {
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome WebView",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
    "Amazon Silk": "Silk",
    "Google": "Google App",
}
_LINUX: Final = frozenset(
    ("Ubuntu", "Debian", "Fedora", "Linux Mint", "Arch Linux", "openSUSE", "Red Hat", "CentOS")
)
_SYSTEMS: Final = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS", **dict.fromkeys(_LINUX, "Linux")}
_DESKTOP_OS: Final = frozenset(
    ("Windows", "macOS", "Linux", "ChromeOS", "FreeBSD", "OpenBSD", "NetBSD", "Solaris")
)
_MOBILE_OS: Final = frozenset(
    ("iOS", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Firefox OS", "HarmonyOS")
)
_TABLET_DEVICES: Final = frozenset(("iPad", "Kindle", "Kindle Fire", "Generic Tablet"))
_OTHER_MARKERS: Final = (
    "SMART-TV",
    "SmartTV",
    "Smart-TV",
    "GoogleTV",
    "Android TV",
    "AppleTV",
    "CrKey",
    "HbbTV",
    "Web0S",
    "PlayStation",
    "Xbox",
    "Nintendo",
    "BRAVIA",
    "; AFT",  # Amazon Fire TV: "Android 9; AFTKA Build/..."
)
_WARM_UP: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)


def _browser(agent: UserAgent | None) -> tuple[str, str]:
    if agent is None:
        return UNKNOWN, ""
    return _BROWSERS.get(agent.family, agent.family), agent.major or ""


def _system(system: OS | None) -> tuple[str, str]:
    if system is None:
        return UNKNOWN, ""
    name = _SYSTEMS.get(system.family, system.family)
    version = system.major or ""
    if name == "macOS" and version == "10" and system.minor:
        version = f"10.{system.minor}"
    return name, version


def device_class(user_agent: str, os_name: str, device: Device | None) -> str:
    """``desktop``, ``mobile``, ``tablet``, ``bot`` or ``other``; rules in the module doc."""
    family = device.family if device is not None else ""
    brand = (device.brand or "") if device is not None else ""
    if family == "Spider":
        return "bot"
    if any(marker in user_agent for marker in _OTHER_MARKERS):
        return "other"
    if family in _TABLET_DEVICES or "Tablet" in brand or "Tablet" in user_agent:
        return "tablet"
    if os_name == "Android":
        return "mobile" if "Mobile" in user_agent else "tablet"
    if family in ("iPhone", "iPod") or os_name in _MOBILE_OS or "Mobi" in user_agent:
        return "mobile"
    if os_name in _DESKTOP_OS or os_name.startswith("Windows"):
        return "desktop"
    return "other"


class UserAgentParser:
    """The domain's ``UserAgentParser`` over ua-parser 1.x and ua-parser-rs (its Rust resolver).

    Construction loads the matchers and builds the resolver (~0.2 s); call ``warm_up`` before
    taking traffic so the first events do not pay for the regex engine's first runs.
    """

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._resolver = Resolver(load_lazy_builtins())
        self._cached = lru_cache(maxsize=cache_size)(self._parse_uncached)

    def parse(self, user_agent: str) -> UserAgentInfo:
        return self._cached(user_agent)

    def warm_up(self) -> None:
        """Run every matcher once on representative UAs (not cached)."""
        for user_agent in _WARM_UP:
            self._parse_uncached(user_agent)

    def cache_info(self) -> tuple[int, int, int]:
        """(hits, misses, current size) of the UA cache, for metrics."""
        info = self._cached.cache_info()
        return info.hits, info.misses, info.currsize

    def _parse_uncached(self, user_agent: str) -> UserAgentInfo:
        result = self._resolver(user_agent, Domain.ALL)
        browser, browser_version = _browser(result.user_agent)
        os_name, os_version = _system(result.os)
        return UserAgentInfo(
            browser=browser,
            browser_version=browser_version,
            os=os_name,
            os_version=os_version,
            device=device_class(user_agent, os_name, result.device),
        )
