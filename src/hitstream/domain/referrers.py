"""Where a visit came from: referrer domain, source name, marketing channel and UTM tags.

Pure and total: ``classify`` and ``parse_campaign`` accept any text and never raise.

**Referrer domain** is the referrer's host, lowercased, without a leading ``www.`` or ``m.``
(``https://www.google.co.uk/search`` → ``google.co.uk``). A referrer without a scheme
(``google.com/x``) is read as a host; an app referrer (``android-app://com.google.android.gm``)
gives the app id. A referrer on the event's own host (a self-referral, compared after the same
normalisation) counts as no referrer, and so does anything that is not a URL.

**Source** is, by precedence:

1. ``utm_source``, trimmed. A well-known value is spelled the usual way (``google`` → Google,
   ``fb``/``facebook`` → Facebook, ``chatgpt.com`` → ChatGPT, ``newsletter`` → Newsletter);
   anything else is kept as sent.
2. The referrer: a well-known site's name (Google, Bing, DuckDuckGo, Facebook, Twitter — also for
   ``x.com`` and ``t.co`` —, LinkedIn, Reddit, YouTube, GitHub, Hacker News, ChatGPT, Perplexity,
   Claude, Gemini, Copilot, Gmail, Outlook ...), else the referrer domain itself. Search brands
   match under any suffix (``google.de``, ``google.com.au``, ``yandex.ru``).
3. The ad platform of a click id in the query (``gclid`` → Google, ``msclkid`` → Bing,
   ``fbclid`` → Facebook ...), for ad clicks whose referrer was stripped.
4. Nothing: the source is empty.

**Channel** is one of ``Channel``; the first rule that applies wins:

1. A paid click id: ``gclid``, ``gbraid``, ``wbraid``, ``msclkid``, ``yclid`` → Paid Search;
   ``ttclid``, ``twclid``, ``li_fat_id``, ``ScCid``, ``rdt_cid``, ``epik`` → Paid Social;
   ``dclid`` → Paid Other. (``fbclid`` is not one: Facebook adds it to every outbound link.)
2. ``utm_medium`` (case-insensitive):
   paid (contains ``paid`` but not ``unpaid``, or has a word among ``cpc``, ``ppc``,
   ``cpa``, ``cpv``, ``cpm``, ``sem``, ``display``, ``banner``, ``retargeting``,
   ``remarketing``, ``affiliate``, ``sponsored``, ``ads``) → Paid Social if it names
   ``social``, Paid Search if it names ``search`` or is ``sem``, Paid Other if it is
   display-like (display, cpm, banner, retargeting, remarketing, affiliate), otherwise by the
   source's kind: a search engine → Paid Search, a social network → Paid Social, anything
   else → Paid Other.
   ``email``, ``e-mail``, ``mail``, ``newsletter`` → Email. ``social``, ``social-media``,
   ``sm`` ... → Organic Social. ``organic`` → the source's channel when the source is a known
   social, email or AI site, otherwise Organic Search (as in Google Analytics).
   ``referral`` → Referral. Any other medium falls through.
3. The kind of the source (from ``utm_source`` when it is a known name, else from the
   referrer, else from the click id): search engine → Organic Search, social network
   (YouTube included) → Organic Social, webmail → Email, AI assistant → AI Assistants, any
   other site or unknown ``utm_source`` → Referral.
4. No source at all → Direct.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from typing import Final, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from hitstream.domain import referrer_data as data
from hitstream.domain.referrer_data import SECOND_LEVEL


class Channel(StrEnum):
    """The fixed set of marketing channels; the values are what the store and dashboard show."""

    DIRECT = "Direct"
    ORGANIC_SEARCH = "Organic Search"
    PAID_SEARCH = "Paid Search"
    ORGANIC_SOCIAL = "Organic Social"
    PAID_SOCIAL = "Paid Social"
    EMAIL = "Email"
    AI_ASSISTANTS = "AI Assistants"
    REFERRAL = "Referral"
    PAID_OTHER = "Paid Other"


CHANNELS: Final = frozenset(c.value for c in Channel)


class Kind(StrEnum):
    """What a well-known site is, which decides its unpaid channel."""

    SEARCH = "search"
    SOCIAL = "social"
    EMAIL = "email"
    AI = "ai"
    OTHER = "other"


def _sites() -> dict[str, tuple[str, Kind]]:
    hosts: dict[str, tuple[str, Kind]] = {}
    for kind, text in ((Kind(k), t) for k, t in data.SITES.items()):
        for line in filter(None, map(str.strip, text.splitlines())):
            name, _, rest = line.partition(" = ")
            hosts.update(dict.fromkeys(rest.split(), (name, kind)))
    return hosts


HOSTS: Final = _sites()
_BY_NAME: Final = {name.lower(): (name, kind) for name, kind in HOSTS.values()}
BRANDS: Final = {brand: _BY_NAME[brand] for brand in data.BRANDS.split()}
NAMES: Final = {
    **_BY_NAME,
    **{
        alias: (name, kind)
        for (name, kind) in HOSTS.values()
        for alias in data.ALIASES.get(name, "").split()
    },
    "newsletter": ("Newsletter", Kind.EMAIL),
    "email": ("Email", Kind.EMAIL),
}
"""Lowercase utm_source values that mean a known site, with the usual spelling."""
CLICK_IDS: Final = {
    key: (name, Kind(kind), None if channel is None else Channel(channel))
    for key, (name, kind, channel) in data.CLICK_IDS.items()
}
"""Ad click ids (lowercase): the platform's name and kind, and the paid channel they prove."""
MAX_TAG: Final = 256
"""UTM values are cut to this many characters, so one odd link cannot bloat the store."""


class Campaign(NamedTuple):
    """The UTM tags of a landing URL, trimmed, and the first ad click id found (lowercase)."""

    source: str = ""
    medium: str = ""
    campaign: str = ""
    term: str = ""
    content: str = ""
    click_id: str = ""


class Attribution(NamedTuple):
    """Where one event came from: the three columns ``put_referrer`` fills."""

    referrer_domain: str
    source: str
    channel: Channel


NO_CAMPAIGN: Final = Campaign()
_UTM_KEYS: Final = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_HOST_CHARS: Final = re.compile(r"^[\w.:-]+$")
_SCHEME_ONLY: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+-]*:")
_WORDS: Final = re.compile(r"[^a-z0-9]+")
_DISPLAY_WORDS: Final = frozenset(
    ("display", "cpm", "banner", "retargeting", "remarketing", "affiliate", "affiliates")
)
_PAID_WORDS: Final = _DISPLAY_WORDS | {"cpc", "ppc", "cpa", "cpv", "cpp", "sem", "sponsored", "ads"}
_EMAIL_WORDS: Final = frozenset(("email", "mail", "newsletter", "newsletters"))
_PAID_CHANNEL: Final = {
    Kind.SEARCH: Channel.PAID_SEARCH,
    Kind.SOCIAL: Channel.PAID_SOCIAL,
}
_ORGANIC_CHANNEL: Final = {
    Kind.SEARCH: Channel.ORGANIC_SEARCH,
    Kind.SOCIAL: Channel.ORGANIC_SOCIAL,
    Kind.EMAIL: Channel.EMAIL,
    Kind.AI: Channel.AI_ASSISTANTS,
    Kind.OTHER: Channel.REFERRAL,
}


def normalize_host(host: str) -> str:
    """Lowercase, no trailing dot, no leading ``www.`` or ``m.``."""
    host = host.lower().rstrip(".")
    if host.startswith("www."):
        return host[4:]
    if host.startswith("m."):
        return host[2:]
    return host


@lru_cache(maxsize=4096)
def referrer_domain(referrer: str) -> str:
    """The normalised host of a referrer URL, or ``""`` when it has none."""
    text = referrer.strip()
    if not text:
        return ""
    if "://" not in text:
        head = text.split("/", 1)[0]
        if _SCHEME_ONLY.match(text) and "." not in head.split(":", 1)[0]:
            return ""  # about:blank, javascript:..., data:...
        text = text if text.startswith("//") else f"//{text}"
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    host = normalize_host(host)
    return host if _HOST_CHARS.match(host) else ""


@lru_cache(maxsize=8192)
def site_of(host: str) -> tuple[str, Kind] | None:
    """The well-known site a normalised host belongs to, or None for any other host.

    Checks the host and each parent domain against the host table, then the host's
    registrable name (``google`` in ``google.co.uk``) against the brands that own every suffix.
    """
    labels = host.split(".")
    for start in range(len(labels) - 1):
        found = HOSTS.get(".".join(labels[start:]))
        if found is not None:
            return found
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in SECOND_LEVEL:
        brand = labels[-3]
    else:
        brand = labels[-2] if len(labels) >= 2 else labels[0]
    return BRANDS.get(brand)


def _named_source(raw: str) -> tuple[str, Kind | None]:
    """A utm_source value as a display name and, when it is a known site, its kind."""
    key = raw.lower()
    named = NAMES.get(key)
    if named is None and "." in key:
        named = site_of(normalize_host(key))
    if named is None:
        return raw, None
    return named


@lru_cache(maxsize=4096)
def parse_campaign(query: str) -> Campaign:
    """The UTM tags and ad click id of a URL query string (without the ``?``)."""
    if not query:
        return NO_CAMPAIGN
    tags = dict.fromkeys(_UTM_KEYS, "")
    click_id = ""
    for key, value in parse_qsl(query):
        name = key.strip().lower()
        if name in tags:
            if not tags[name]:
                tags[name] = value.strip()[:MAX_TAG]
        elif not click_id and name in CLICK_IDS and value.strip():
            click_id = name
    return Campaign(
        tags["utm_source"],
        tags["utm_medium"],
        tags["utm_campaign"],
        tags["utm_term"],
        tags["utm_content"],
        click_id,
    )


@lru_cache(maxsize=1024)
def _medium_channel(medium: str, kind: Kind | None) -> Channel | None:
    """The channel that ``utm_medium`` alone decides, or None to fall through."""
    text = medium.lower()
    words = frozenset(_WORDS.split(text)) - {""}
    if not words:
        return None
    if ("paid" in text and "unpaid" not in text) or words & _PAID_WORDS:
        if "social" in text:
            return Channel.PAID_SOCIAL
        if "search" in text or "sem" in words:
            return Channel.PAID_SEARCH
        if words & _DISPLAY_WORDS or kind is None:
            return Channel.PAID_OTHER
        return _PAID_CHANNEL.get(kind, Channel.PAID_OTHER)
    if words & _EMAIL_WORDS:
        return Channel.EMAIL
    if "social" in text or "sm" in words:
        return Channel.ORGANIC_SOCIAL
    if text == "organic":
        if kind in (Kind.SOCIAL, Kind.EMAIL, Kind.AI):
            return _ORGANIC_CHANNEL[kind]
        return Channel.ORGANIC_SEARCH
    if text == "referral":
        return Channel.REFERRAL
    return None


def classify(referrer: str, hostname: str = "", campaign: Campaign = NO_CAMPAIGN) -> Attribution:
    """Referrer domain, source and channel of one event; the rules are in the module doc."""
    domain = referrer_domain(referrer)
    if domain and domain == normalize_host(hostname):
        domain = ""
    site = site_of(domain) if domain else None
    click = CLICK_IDS.get(campaign.click_id) if campaign.click_id else None

    kind: Kind | None
    if campaign.source:
        source, kind = _named_source(campaign.source)
        if kind is None:
            kind = site[1] if site else (Kind.OTHER if domain else click[1] if click else None)
    elif domain:
        source, kind = site if site else (domain, Kind.OTHER)
    elif click:
        source, kind = click[0], click[1]
    else:
        source, kind = "", None

    if click is not None and click[2] is not None:
        return Attribution(domain, source, click[2])
    if campaign.medium:
        channel = _medium_channel(campaign.medium, kind)
        if channel is not None:
            return Attribution(domain, source, channel)
    if kind is None:
        return Attribution(domain, source, Channel.REFERRAL if source else Channel.DIRECT)
    return Attribution(domain, source, _ORGANIC_CHANNEL[kind])
