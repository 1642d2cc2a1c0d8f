"""Referrer domain, source and channel classification, and UTM parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitstream.domain.referrers import (
    CHANNELS,
    HOSTS,
    MAX_TAG,
    NAMES,
    Campaign,
    Channel,
    classify,
    parse_campaign,
    referrer_domain,
)


def attribution(referrer: str, hostname: str = "", query: str = "") -> tuple[str, str, str]:
    found = classify(referrer, hostname, parse_campaign(query))
    return found.referrer_domain, found.source, found.channel.value


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("https://www.google.com/", ("google.com", "Google", "Organic Search")),
        ("https://www.google.co.uk/search?q=x", ("google.co.uk", "Google", "Organic Search")),
        ("https://google.com.au/", ("google.com.au", "Google", "Organic Search")),
        ("https://www.google.de/", ("google.de", "Google", "Organic Search")),
        ("https://search.yahoo.co.jp/search", ("search.yahoo.co.jp", "Yahoo", "Organic Search")),
        ("https://www.bing.com/search?q=a", ("bing.com", "Bing", "Organic Search")),
        ("https://duckduckgo.com/", ("duckduckgo.com", "DuckDuckGo", "Organic Search")),
        ("https://yandex.ru/search", ("yandex.ru", "Yandex", "Organic Search")),
        ("https://l.facebook.com/l.php?u=x", ("l.facebook.com", "Facebook", "Organic Social")),
        ("https://m.facebook.com/", ("facebook.com", "Facebook", "Organic Social")),
        ("https://t.co/abc", ("t.co", "Twitter", "Organic Social")),
        ("https://x.com/someone", ("x.com", "Twitter", "Organic Social")),
        ("https://www.linkedin.com/feed", ("linkedin.com", "LinkedIn", "Organic Social")),
        ("https://old.reddit.com/r/python", ("old.reddit.com", "Reddit", "Organic Social")),
        ("https://m.youtube.com/watch?v=1", ("youtube.com", "YouTube", "Organic Social")),
        (
            "https://news.ycombinator.com/item?id=1",
            ("news.ycombinator.com", "Hacker News", "Organic Social"),
        ),
        ("https://chatgpt.com/", ("chatgpt.com", "ChatGPT", "AI Assistants")),
        ("https://chat.openai.com/c/1", ("chat.openai.com", "ChatGPT", "AI Assistants")),
        ("https://www.perplexity.ai/search", ("perplexity.ai", "Perplexity", "AI Assistants")),
        ("https://claude.ai/chat/1", ("claude.ai", "Claude", "AI Assistants")),
        ("https://gemini.google.com/app", ("gemini.google.com", "Gemini", "AI Assistants")),
        ("https://copilot.microsoft.com/", ("copilot.microsoft.com", "Copilot", "AI Assistants")),
        ("https://mail.google.com/mail/u/0/", ("mail.google.com", "Gmail", "Email")),
        ("android-app://com.google.android.gm/", ("com.google.android.gm", "Gmail", "Email")),
        ("https://outlook.live.com/mail/", ("outlook.live.com", "Outlook", "Email")),
        ("https://github.com/org/repo", ("github.com", "GitHub", "Referral")),
        ("https://docs.google.com/document/d/1", ("docs.google.com", "Google Docs", "Referral")),
        ("https://en.wikipedia.org/wiki/X", ("en.wikipedia.org", "Wikipedia", "Referral")),
        (
            "https://Blog.Example.COM:8443/post",
            ("blog.example.com", "blog.example.com", "Referral"),
        ),
        ("http://127.0.0.1:8000/x", ("127.0.0.1", "127.0.0.1", "Referral")),
        ("google.com/search", ("google.com", "Google", "Organic Search")),
        ("", ("", "", "Direct")),
        ("   ", ("", "", "Direct")),
        ("about:blank", ("", "", "Direct")),
        ("javascript:alert(1)", ("", "", "Direct")),
        ("http://[::1", ("", "", "Direct")),
        ("https://exa mple.com/", ("", "", "Direct")),
    ],
)
def test_referrer_alone_decides_domain_source_and_channel(
    referrer: str, expected: tuple[str, str, str]
) -> None:
    assert attribution(referrer) == expected


@pytest.mark.parametrize(
    ("referrer", "hostname"),
    [
        ("https://shop.example/cart", "shop.example"),
        ("https://www.shop.example/cart", "shop.example"),
        ("https://shop.example/cart", "www.shop.example"),
        ("http://localhost:8000/", "localhost"),
    ],
)
def test_self_referral_is_direct(referrer: str, hostname: str) -> None:
    assert attribution(referrer, hostname) == ("", "", "Direct")


def test_subdomain_of_own_site_is_not_a_self_referral() -> None:
    assert attribution("https://blog.shop.example/", "shop.example")[2] == "Referral"


@pytest.mark.parametrize(
    ("referrer", "query", "expected"),
    [
        # Click ids prove a paid click, whatever else the URL says.
        ("", "gclid=abc", ("", "Google", "Paid Search")),
        ("https://www.google.com/", "gbraid=1", ("google.com", "Google", "Paid Search")),
        ("", "msclkid=1", ("", "Bing", "Paid Search")),
        ("", "ttclid=1", ("", "TikTok", "Paid Social")),
        ("", "li_fat_id=1", ("", "LinkedIn", "Paid Social")),
        ("", "twclid=1&utm_medium=email", ("", "Twitter", "Paid Social")),
        ("", "dclid=1", ("", "Google", "Paid Other")),
        ("", "gclid=", ("", "", "Direct")),
        # fbclid is on every Facebook outbound link: paid only with a paid medium.
        ("https://l.facebook.com/", "fbclid=x", ("l.facebook.com", "Facebook", "Organic Social")),
        ("", "fbclid=x", ("", "Facebook", "Organic Social")),
        ("", "fbclid=x&utm_medium=paid", ("", "Facebook", "Paid Social")),
        # utm_medium.
        ("", "utm_source=google&utm_medium=cpc", ("", "Google", "Paid Search")),
        ("", "utm_source=fb&utm_medium=cpc", ("", "Facebook", "Paid Social")),
        ("", "utm_source=facebook&utm_medium=paid_social", ("", "Facebook", "Paid Social")),
        ("", "utm_source=acme&utm_medium=paidsearch", ("", "acme", "Paid Search")),
        ("", "utm_source=acme&utm_medium=cpc", ("", "acme", "Paid Other")),
        ("", "utm_source=acme&utm_medium=display", ("", "acme", "Paid Other")),
        ("", "utm_source=google&utm_medium=cpm", ("", "Google", "Paid Other")),
        ("", "utm_source=newsletter&utm_medium=email", ("", "Newsletter", "Email")),
        ("", "utm_source=weekly&utm_medium=E-Mail", ("", "weekly", "Email")),
        ("", "utm_medium=newsletter", ("", "", "Email")),
        ("", "utm_source=Mastodon&utm_medium=social", ("", "Mastodon", "Organic Social")),
        ("", "utm_source=acme&utm_medium=social-media", ("", "acme", "Organic Social")),
        ("", "utm_source=duckduckgo&utm_medium=organic", ("", "DuckDuckGo", "Organic Search")),
        ("", "utm_source=reddit&utm_medium=organic", ("", "Reddit", "Organic Social")),
        ("", "utm_source=acme&utm_medium=referral", ("", "acme", "Referral")),
        ("", "utm_source=x&utm_medium=unpaid", ("", "Twitter", "Organic Social")),
        # utm_source without a medium: its kind, else the referrer's, else Referral.
        ("", "utm_source=chatgpt.com", ("", "ChatGPT", "AI Assistants")),
        ("", "utm_source=+Google+", ("", "Google", "Organic Search")),
        (
            "https://www.google.com/",
            "utm_source=spring",
            ("google.com", "spring", "Organic Search"),
        ),
        ("", "utm_source=Spring%20Sale", ("", "Spring Sale", "Referral")),
        (
            "https://news.ycombinator.com/",
            "utm_source=hn",
            ("news.ycombinator.com", "Hacker News", "Organic Social"),
        ),
        ("https://shop.example/", "utm_source=newsletter", ("", "Newsletter", "Email")),
    ],
)
def test_campaign_tags_and_click_ids_override_the_referrer(
    referrer: str, query: str, expected: tuple[str, str, str]
) -> None:
    assert attribution(referrer, "shop.example", query) == expected


def test_parse_campaign_reads_trims_and_decodes_the_five_tags() -> None:
    query = (
        "utm_source=+Google+&UTM_MEDIUM=cpc&utm_campaign=spring%20sale&utm_term=shoes"
        "&utm_content=banner-1&utm_source=second&gclid=abc&fbclid=def"
    )
    assert parse_campaign(query) == Campaign(
        "Google", "cpc", "spring sale", "shoes", "banner-1", "gclid"
    )


def test_parse_campaign_empty_and_untagged_queries() -> None:
    assert parse_campaign("") == Campaign()
    assert parse_campaign("page=2&q=a") == Campaign()
    assert parse_campaign("utm_source=&utm_medium=") == Campaign()


def test_parse_campaign_caps_long_values() -> None:
    assert len(parse_campaign("utm_campaign=" + "a" * 5000).campaign) == MAX_TAG


def test_referrer_domain_strips_only_leading_www_and_m() -> None:
    assert referrer_domain("https://www.m.example.com/") == "m.example.com"
    assert referrer_domain("https://mail.example.com./") == "mail.example.com"
    assert referrer_domain("//www.example.org/x") == "example.org"


def test_site_tables_are_well_formed() -> None:
    assert all(host == host.lower().strip() and "." in host for host in HOSTS)
    assert all(key == key.lower() for key in NAMES)
    assert NAMES["fb"] == NAMES["facebook"]


@given(st.text(), st.text(), st.text())
def test_classify_never_raises_and_returns_a_known_channel(
    referrer: str, hostname: str, query: str
) -> None:
    found = classify(referrer, hostname, parse_campaign(query))
    assert found.channel in CHANNELS
    assert isinstance(found.channel, Channel)
    assert found.referrer_domain == found.referrer_domain.lower()


@given(
    st.sampled_from(["", "https://", "http://www.", "android-app://", "//"]),
    st.from_regex(r"[a-z0-9.\-]{0,30}", fullmatch=True),
    st.lists(
        st.tuples(
            st.sampled_from(["utm_source", "utm_medium", "gclid", "fbclid", "x"]),
            st.text(max_size=12),
        ),
        max_size=4,
    ),
)
def test_direct_means_no_source_on_url_like_input(
    prefix: str, host: str, pairs: list[tuple[str, str]]
) -> None:
    query = "&".join(f"{key}={value}" for key, value in pairs)
    campaign = parse_campaign(query)
    found = classify(f"{prefix}{host}/path", "", campaign)
    assert found.channel in CHANNELS
    # Direct means "no source"; without a source only utm_medium can name a channel.
    assert (found.channel == Channel.DIRECT) <= (found.source == "")
    if not found.source and not campaign.medium:
        assert found.channel == Channel.DIRECT
