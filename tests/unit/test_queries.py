"""What of a page URL is kept (decision 0048): its campaign tags and hash route, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitstream.domain.events import Props
from hitstream.domain.queries import campaign_only, cut_prop_urls
from hitstream.domain.referrers import parse_campaign


@pytest.mark.parametrize(
    ("url", "query", "expected"),
    [
        (
            "https://shop.example/confirm?email=ann%40x.io&token=s3cr3t",
            "email=ann%40x.io&token=s3cr3t",
            ("https://shop.example/confirm", ""),
        ),
        (
            "https://shop.example/p?utm_source=news&q=shoes&UTM_Medium=email&utm_campaign=a+b",
            "utm_source=news&q=shoes&UTM_Medium=email&utm_campaign=a+b",
            (
                "https://shop.example/p?utm_source=news&UTM_Medium=email&utm_campaign=a+b",
                "utm_source=news&UTM_Medium=email&utm_campaign=a+b",
            ),
        ),
        (  # an ad click id's value names one click: only its presence is kept
            "https://shop.example/?gclid=Cj0KCQ123&fbclid=IwAR9",
            "gclid=Cj0KCQ123&fbclid=IwAR9",
            ("https://shop.example/?gclid=-&fbclid=-", "gclid=-&fbclid=-"),
        ),
        (  # a token in the fragment goes; a hash router's route stays
            "https://app.example/cb#access_token=abc&state=1",
            "",
            ("https://app.example/cb", ""),
        ),
        ("https://app.example/#/settings?tab=2", "", ("https://app.example/#/settings?tab=2", "")),
        (  # user info never
            "https://ann:pw@shop.example:8443/x?utm_term=t",
            "utm_term=t",
            ("https://shop.example:8443/x?utm_term=t", "utm_term=t"),
        ),
        ("https://[2001:db8::1]:8080/x?id=7", "id=7", ("https://[2001:db8::1]:8080/x", "")),
        ("", "utm_source=a&ref=b", ("", "utm_source=a")),  # a path's query, no URL
    ],
)
def test_only_the_campaign_tags_and_route_are_kept(
    url: str, query: str, expected: tuple[str, str]
) -> None:
    assert campaign_only(url, query) == expected


@given(
    tags=st.dictionaries(
        st.sampled_from(["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"]),
        st.text(alphabet="abcXYZ019-_.", min_size=1, max_size=8),
    ),
    noise=st.dictionaries(
        st.text(alphabet="abcdefqx", min_size=1, max_size=6).filter(lambda k: k != "utm"),
        st.text(alphabet="abc@.019", min_size=0, max_size=8),
    ),
    click=st.sampled_from(["", "gclid", "msclkid", "ttclid"]),
)
def test_attribution_reads_the_same_campaign_from_what_is_kept(
    tags: dict[str, str], noise: dict[str, str], click: str
) -> None:
    pairs = [*tags.items(), *noise.items()] + ([(click, "AbC123")] if click else [])
    query = "&".join(f"{k}={v}" for k, v in pairs)
    url, kept = campaign_only(f"https://a.io/p?{query}", query)
    assert parse_campaign(kept) == parse_campaign(query)
    assert url == "https://a.io/p" + (f"?{kept}" if kept else "")
    for key, value in noise.items():
        assert f"{key}={value}" not in kept.split("&") or key in tags
    assert "AbC123" not in url


def test_prop_values_that_are_urls_are_cut_like_page_urls() -> None:
    """An outbound link's or a download's ``url`` prop: a token, an email, user info go;
    campaign tags stay; other values (a text with a ``?``, numbers) are left as sent."""
    props: Props = {
        "url": "https://files.example/report.pdf?token=s3cr3t&utm_source=site#page=2",
        "Link": "HTTPS://ann:pw@partner.example/go?email=ann%40x.io",
        "plan": "pro?",
        "note": "see https://x.example/?q=1",
        "count": 3,
        "ok": True,
    }
    cut = cut_prop_urls(props)
    assert cut == {
        "url": "https://files.example/report.pdf?utm_source=site",
        "Link": "https://partner.example/go",  # the scheme in lower case, as urlsplit gives
        "plan": "pro?",
        "note": "see https://x.example/?q=1",
        "count": 3,
        "ok": True,
    }
    assert str(props["url"]).endswith("#page=2")  # the caller's dict is not changed
    plain: Props = {"url": "https://partner.example/go", "plan": "pro"}
    assert cut_prop_urls(plain) is plain  # nothing to cut: no copy
