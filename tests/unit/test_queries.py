"""What of a page URL is kept (decision 0048): its campaign tags and hash route, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitstream.domain.queries import campaign_only
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
