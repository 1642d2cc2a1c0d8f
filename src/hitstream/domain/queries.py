"""What of a page's URL is kept (decision 0048): by default its campaign tags, nothing else of
its query string.

A page URL's query string and fragment hold whatever the site put there: search terms, email
addresses in a confirmation link, a password-reset or OAuth token (``#access_token=...``),
order numbers. An analytics store does not need them: the page is its path, and attribution
reads the UTM tags and whether an ad click id is present. So the collector keeps, of each
page URL (``campaign_only``):

- the scheme, host and port (no user info) and the path;
- of the query, the five UTM tags as sent, and each ad click id (``gclid``, ``msclkid`` ...)
  with its value replaced by ``-``: the value names one click, and through the ad platform
  one person, while attribution only reads that it is there;
- of the fragment, a hash router's route (``#/about``, ``#!/about``), which is the page.

The same rule holds for every custom property value that is an absolute http(s) URL
(``cut_prop_urls``): the tracker's outbound-link and download clicks send the link's
``url``, and a download link may carry a signed token or a customer's email.

``HITSTREAM_URL_QUERY=all`` keeps URLs as sent (a site that wants ``?q=`` breakdowns in its
exports takes that on). The referrer is left as sent: browsers already send only the origin
of a page on another site (``strict-origin-when-cross-origin``), and the referrer breakdown
names where visitors came from.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from hitstream.domain.events import Props
from hitstream.domain.referrers import CLICK_IDS

UTM_KEYS: Final = frozenset({"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"})
URL_QUERY_MODES: Final = ("campaign", "all")


def _kept(query: str) -> str:
    kept = []
    for part in query.split("&"):
        raw_key, eq, _ = part.partition("=")
        key = unquote_plus(raw_key).strip().lower()
        if key in UTM_KEYS:
            kept.append(part)
        elif key in CLICK_IDS and eq:
            kept.append(f"{raw_key}=-")
    return "&".join(kept)


@lru_cache(maxsize=8192)
def campaign_only(url: str, query: str) -> tuple[str, str]:
    """(url, query) of a checked event (``validation.split_location``'s query, which may
    come from its path) with only what this module keeps. Never raises: a URL that does
    not split is returned without its query and fragment."""
    kept = _kept(query) if query else ""
    if not url:
        return url, kept
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0], kept
    netloc = host if port is None else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal keeps its brackets
        netloc = f"[{host}]" if port is None else f"[{host}]:{port}"
    fragment = parts.fragment if parts.fragment.startswith(("/", "!/")) else ""
    own = kept if parts.query == query else _kept(parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, own, fragment)), kept


_URL_PREFIXES: Final = ("http://", "https://")


def cut_prop_urls(props: Props) -> Props:
    """``props`` with each value that is an absolute http(s) URL holding a query, a fragment
    or user info cut as ``campaign_only`` cuts a page's URL; the same dict when none is."""
    cut: Props | None = None
    for key, value in props.items():
        if (
            isinstance(value, str)
            and value[:8].lower().startswith(_URL_PREFIXES)
            and ("?" in value or "#" in value or "@" in value)
        ):
            if cut is None:
                cut = dict(props)
            cut[key] = campaign_only(value, "")[0]
    return props if cut is None else cut
