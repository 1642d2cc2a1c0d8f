"""Site records: input checks and allowed hosts."""

from __future__ import annotations

import pytest

from hitstream.domain.errors import QueryError
from hitstream.domain.sites import Site, changed_site, check_hosts, host_allowed, new_site


def test_default_hosts_are_the_domain_and_its_subdomains() -> None:
    site = Site("example.com")
    assert site.allows("example.com")
    assert site.allows("WWW.Example.com.")
    assert site.allows("shop.example.com:8443")
    assert not site.allows("evil.example")
    assert not site.allows("notexample.com")
    assert not site.allows("example.com.evil.io")
    assert not site.allows("")


def test_a_list_replaces_the_default_and_wildcards_mean_subdomains() -> None:
    site = Site("example.com", allowed_hosts=("example.com", "*.cdn.io", "localhost"))
    assert site.allows("example.com")
    assert not site.allows("www.example.com")
    assert site.allows("a.cdn.io")
    assert not site.allows("cdn.io")
    assert site.allows("localhost:3000")


def test_new_site_checks_each_field_by_name() -> None:
    site = new_site(
        {"site_id": "shop.io", "timezone": "Europe/Berlin", "allowed_hosts": "shop.io, *.shop.io",
         "retention_days": 30, "public": True},
        now_ms=5,
    )  # fmt: skip
    assert site == Site("shop.io", "Europe/Berlin", (), 30, True, 5)  # the default, written out
    cases: list[tuple[dict[str, object], str]] = [
        ({"site_id": "bad site"}, "site_id"),
        ({"site_id": "a.io", "timezone": "Mars/Olympus"}, "timezone"),
        ({"site_id": "a.io", "allowed_hosts": ["exa mple.com"]}, "allowed_hosts"),
        ({"site_id": "a.io", "retention_days": -1}, "retention_days"),
        ({"site_id": "a.io", "retention_days": True}, "retention_days"),
        ({"site_id": "a.io", "public": "yes"}, "public"),
        ({"site_id": "a.io", "colour": "red"}, "colour"),
        ({"site_id": "a.io", "settings": []}, "settings"),
    ]
    for data, field in cases:
        with pytest.raises(QueryError) as caught:
            new_site(data, now_ms=0)
        assert caught.value.field == field, data


def test_changes_keep_what_they_do_not_name() -> None:
    site = Site("a.io", "UTC", ("a.io",), 10, False, 1, {"goals": ["signup"]})
    after = changed_site(site, {"public": True})
    assert after == Site("a.io", "UTC", ("a.io",), 10, True, 1, {"goals": ["signup"]})
    assert changed_site(site, {"allowed_hosts": []}).allowed_hosts == ()


def test_hosts_are_normalised() -> None:
    assert check_hosts(["Example.COM.", "*.Shop.io", "127.0.0.1", "localhost:8080"]) == (
        "example.com",
        "*.shop.io",
        "127.0.0.1",
        "localhost",
    )
    assert host_allowed(("127.0.0.1",), "127.0.0.1:9000")


def test_a_pasted_url_is_named_as_one_and_an_ip_site_has_no_subdomains() -> None:
    for pasted in ("https://www.MySite.com/", "mysite.com/blog"):
        with pytest.raises(QueryError, match="is a site's domain, not a URL"):
            new_site({"site_id": pasted}, 0)
    assert new_site({"site_id": "127.0.0.1"}, 0).hosts() == ("127.0.0.1",)  # no *.127.0.0.1
    assert new_site({"site_id": "shop.example"}, 0).hosts() == ("shop.example", "*.shop.example")
