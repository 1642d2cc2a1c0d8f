"""Plausible's ``POST /api/event`` and Umami's ``POST /api/send`` in process (every role,
memory adapters): what each body becomes in the event log, the named refusals and their
counts, the cache token, CORS, and the per-site Umami website id."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hitstream.bootstrap import Runtime, build
from hitstream.domain.errors import QueryError
from hitstream.domain.sites import Site, changed_site
from hitstream.log.base import EventLog
from hitstream.services import wire
from hitstream.settings import Settings
from hitstream.web.app import create_app
from hitstream.web.compat import plausible, umami
from hitstream.web.compat.trackers import Refused
from tests.access import admin_key, bearer

SHOP = "shop.example"
BLOG = "blog.example"
WEBSITE = "4f9a2c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    sites = [{"site_id": SHOP, "umami_website_id": WEBSITE.upper()}, {"site_id": BLOG}]
    settings = Settings(
        data_dir=tmp_path,
        log_url="memory://",
        store_url="memory://",
        cache_url="memory://",
        sites=json.dumps(sites),
    )
    runtime = build(settings)
    runtime.announce = lambda line: None
    await runtime.start(run_processor=False)
    yield runtime
    await runtime.stop()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime.services))
    headers = {"user-agent": CHROME}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://hitstream.test", headers=headers
    ) as c:
        yield c


def logged(runtime: Runtime) -> list[dict[str, Any]]:
    """Every event the log holds, decoded."""
    assert runtime.services.collector is not None
    log: EventLog = runtime.services.collector.log
    messages = log.messages()  # type: ignore[attr-defined]
    return [dataclasses.asdict(wire.decode(m.value)) for m in messages]


def refusals(runtime: Runtime) -> dict[str, int]:
    assert runtime.services.collector is not None
    return {reason: n for (_, reason), n in runtime.services.collector.rejections.items()}


# -- Plausible -------------------------------------------------------------------------------


async def test_plausible_script_bodies_become_canonical_events(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    bodies = [
        {"n": "pageview", "u": f"https://{SHOP}/?utm_source=news", "d": SHOP, "r": None, "v": 36},
        {"n": "Signup", "u": f"https://{SHOP}/pricing", "d": SHOP, "r": "https://ddg.gg/",
         "p": {"plan": "pro", "seats": 3, "trial": True, "skip": None, "nested": {"a": 1}},
         "$": {"amount": "15.99", "currency": "eur"}},
        {"n": "engagement", "u": f"https://{SHOP}/pricing", "d": SHOP, "sd": 140, "e": 5120,
         "p": {"plan": "pro"}},
        {"name": "autoplay", "url": f"https://www.{SHOP}/", "domain": f"www.{SHOP}",
         "interactive": False, "meta": json.dumps({"video": "intro"})},
        {"n": "pageview", "u": f"https://{SHOP}/app#/settings", "d": SHOP, "h": 1},
    ]  # fmt: skip
    for body in bodies:
        answer = await client.post(
            "/api/event", content=json.dumps(body), headers={"content-type": "text/plain"}
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == 1
    events = logged(runtime)
    assert [(e["site_id"], e["type"], e["name"], e["path"]) for e in events] == [
        (SHOP, "pageview", "", "/"),
        (SHOP, "custom", "Signup", "/pricing"),
        (SHOP, "session", "engagement", "/pricing"),
        (SHOP, "session", "autoplay", "/"),
        (SHOP, "pageview", "", "/app#/settings"),
    ]
    assert events[0]["query"] == "utm_source=news" and events[0]["referrer"] == ""
    assert events[1]["referrer"] == "https://ddg.gg/"
    assert events[1]["props"] == {
        "plan": "pro",
        "seats": "3",
        "trial": "true",
        "revenue_amount": "15.99",
        "revenue_currency": "EUR",
    }
    assert events[2]["props"] == {"plan": "pro", "scroll_depth": 100, "engagement_time_ms": 5120}
    assert events[3]["props"] == {"video": "intro"}
    assert all(e["user_agent"] == CHROME and e["visitor_id"] for e in events)
    assert len({e["visitor_id"] for e in events}) == 1  # one browser, one site, one day


async def test_plausible_domain_list_gives_one_event_per_registered_site(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    body = {"n": "pageview", "u": f"https://{SHOP}/", "d": f"{SHOP}, {BLOG},unknown.example"}
    answer = await client.post("/api/event", json=body)
    assert answer.status_code == 202, answer.text
    out = answer.json()
    assert out["accepted"] == 1  # blog.example does not allow shop.example's URL host
    reasons = {r["index"]: r["errors"][0] for r in out["rejected"]}
    assert reasons == {
        1: {"field": "u", "reason": "its host is not an allowed host of the site"},
        2: {"field": "d", "reason": "is not a registered site"},
    }
    assert [e["site_id"] for e in logged(runtime)] == [SHOP]
    counted = refusals(runtime)
    assert counted["url: its host is not an allowed host of the site"] == 1
    assert counted["site_id: is not a registered site"] == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field", "label"),
    [
        (b"not json", "text/plain", 400, "body", "plausible: body"),
        (b"[1, 2]", "text/plain", 400, "body", "plausible: body"),
        (b'{"u": "https://shop.example/", "d": "shop.example"}', "text/plain", 422, "n",
         "plausible: n"),
        (b'{"n": "pageview", "d": "shop.example"}', "text/plain", 422, "u", "plausible: u"),
        (b'{"name": "pageview", "domain": "shop.example"}', "", 422, "url", "plausible: u"),
        (b'{"url": "https://shop.example/", "domain": "shop.example"}', "", 422, "name",
         "plausible: n"),
        (b'{"name": "x", "url": 5, "domain": "shop.example"}', "", 422, "url", "plausible: u"),
        (b'{"n": "pageview", "u": "https://shop.example/", "d": 7}', "", 422, "d", "plausible: d"),
        (b'{"n": "pageview", "u": "https://shop.example/", "d": " , "}', "", 422, "d",
         "plausible: d"),
        (b'{"n": "x", "u": "https://shop.example/", "d": "shop.example", "p": "[1]"}', "", 422,
         "p", "plausible: p"),
        (b'{"n": "x", "u": "https://shop.example/", "d": "shop.example", '
         b'"$": {"amount": "lots", "currency": "EUR"}}', "", 422, "$.amount", "plausible: $"),
        (b'{"n": "x", "u": "https://shop.example/", "d": "shop.example", '
         b'"revenue": {"amount": 3, "currency": "euro"}}', "", 422, "revenue.currency",
         "plausible: $"),
        (b'{"n": "engagement", "u": "https://shop.example/", "d": "shop.example"}', "", 422, "sd",
         "plausible: sd"),
        (b'{"n": "pageview", "u": "https://shop.example/", "d": "shop.example"}',
         "application/xml", 415, "content-type", "plausible: content-type"),
    ],
    ids=["not-json", "not-object", "no-name", "no-url", "no-url-long", "no-name-long", "url-type", "domain-type", "no-domain",
         "props", "revenue-amount", "revenue-currency", "engagement-empty", "media-type"],
)  # fmt: skip
async def test_plausible_bad_bodies_are_named_and_counted(
    runtime: Runtime,
    client: httpx.AsyncClient,
    body: bytes,
    content_type: str,
    status: int,
    field: str,
    label: str,
) -> None:
    answer = await client.post("/api/event", content=body, headers={"content-type": content_type})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert refusals(runtime) == {f"request {status}: {label}": 1}
    assert logged(runtime) == []


async def test_plausible_url_the_collector_refuses_is_named_as_sent(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    answer = await client.post(
        "/api/event", json={"name": "pageview", "url": "app://shop/screen", "domain": SHOP}
    )
    assert answer.status_code == 422
    assert answer.json()["error"] == {"field": "url", "reason": "must be an absolute http(s) URL"}
    assert refusals(runtime) == {"url: must be an absolute http(s) URL": 1}


def test_plausible_translation_takes_the_domain_from_the_url_when_absent() -> None:
    events, names = plausible.translate({"n": "pageview", "u": "https://www.shop.example/a"})
    assert [e["site_id"] for e in events] == [SHOP]
    assert names["site_id"] == "d"
    with pytest.raises(Refused) as refused:
        plausible.translate(
            {"n": "pageview", "u": "https://x.example/", "d": ",".join("abcdefghijk")}
        )
    assert refused.value.field == "d" and "at most 10" in refused.value.reason


# -- Umami ---------------------------------------------------------------------------------


def umami_body(kind: str = "event", **payload: object) -> dict[str, object]:
    base: dict[str, object] = {
        "website": WEBSITE,
        "hostname": SHOP,
        "screen": "1440x900",
        "language": "en-GB",
        "title": "Shop",
        "url": f"https://{SHOP}/",
        "referrer": "",
    }
    return {"type": kind, "payload": {**base, **payload}}


async def test_umami_script_bodies_become_canonical_events(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    bodies = [
        umami_body(),  # a newer script: the full URL
        # an older script: encodeURI(path + search), encodeURIComponent(title)
        umami_body(url="/caf%25C3%25A9?utm_term=1%253F", title="Caf%C3%A9%20menu",
                   referrer="https://www.google.com/search?q=caf%25C3%25A9"),
        umami_body(name="signup", data={"plan": "pro", "seats": 3, "address": {"city": "Oslo"},
                                        "tags": ["a", "b"], "none": None}, tag="b-variant"),
        umami_body("identify", data={"tier": "gold"}, id="user-42"),
        {"type": "event", "payload": {"website": SHOP, "url": "/blog", "hostname": ""}},
        # the site's own id in another case names it too
        {"type": "event", "payload": {"website": SHOP.upper(), "url": "/up", "hostname": ""}},
    ]  # fmt: skip
    for body in bodies:
        answer = await client.post("/api/send", json=body)
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == 1 and answer.json()["cache"]
    events = logged(runtime)
    assert [(e["site_id"], e["type"], e["name"], e["path"]) for e in events] == [
        (SHOP, "pageview", "", "/"),
        (SHOP, "pageview", "", "/café"),  # a readable path (decision 0050)
        (SHOP, "custom", "signup", "/"),
        (SHOP, "session", "identify", "/"),
        (SHOP, "pageview", "", "/blog"),
        (SHOP, "pageview", "", "/up"),
    ]
    assert events[0]["screen_width"] == 1440 and events[0]["title"] == "Shop"
    assert events[1]["title"] == "Café menu" and events[1]["query"] == "utm_term=1%3F"
    assert events[1]["referrer"] == "https://www.google.com/search?q=caf%C3%A9"
    assert events[1]["url"] == f"https://{SHOP}/caf%C3%A9?utm_term=1%3F"
    assert events[2]["props"] == {
        "plan": "pro",
        "seats": 3,
        "address.city": "Oslo",
        "tags": '["a","b"]',
        "tag": "b-variant",
    }
    assert events[3]["props"] == {"tier": "gold"} and events[3]["user_id"] == "user-42"
    assert events[4]["hostname"] == "" and events[4]["url"] == ""


@pytest.mark.parametrize(
    ("body", "status", "field", "label"),
    [
        ({"type": "event"}, 422, "payload", "umami: payload"),
        ({"type": "event", "payload": {"url": "/"}}, 422, "payload.website", "umami: website"),
        (umami_body(website="9d4b7a60-0000-4000-8000-000000000000"), 422, "payload.website",
         "umami: website"),
        (umami_body("track"), 422, "type", "umami: type"),
        (umami_body(screen="wide"), 422, "payload.screen", "umami: screen"),
        (umami_body(data=[1, 2]), 422, "payload.data", "umami: data"),
        (umami_body(title=5), 422, "payload.title", "umami: title"),
        (umami_body(url="ftp://shop.example/"), 422, "payload.url", "umami: url"),
        (umami_body("identify"), 422, "payload.data", "umami: data"),
        ([umami_body()], 400, "body", "umami: body"),
    ],
    ids=["no-payload", "no-website", "unknown-website", "type", "screen", "data", "title",
         "url", "identify-empty", "array"],
)  # fmt: skip
async def test_umami_bad_bodies_are_named_and_counted(
    runtime: Runtime,
    client: httpx.AsyncClient,
    body: object,
    status: int,
    field: str,
    label: str,
) -> None:
    answer = await client.post("/api/send", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert "cache" not in answer.json()
    assert refusals(runtime) == {f"request {status}: {label}": 1}
    assert logged(runtime) == []


async def test_refusals_count_under_the_registered_site_they_name(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A tracker's request refused whole is counted under the site it named when that is a
    registered one (the site's own quality answer lists it: they all went to the no-site
    count); under none when no registered site can be read (decision 0051)."""
    assert runtime.services.collector is not None
    plausible = [
        b'{"n": "x", "u": "https://shop.example/", "d": "shop.example", "$": {"amount": "abc"}}',
        b'{"n": "engagement", "u": "https://www.shop.example/"}',  # no d: the URL's host
        b'{"n": "x", "u": "https://nope.example/", "d": "nope.example", "p": "[1]"}',
        b"not json",
    ]
    for body in plausible:
        answer = await client.post(
            "/api/event", content=body, headers={"content-type": "text/plain"}
        )
        assert answer.status_code in (400, 422), answer.text
    for sent_body in (
        umami_body(screen="wide"),
        umami_body(website="9d4b7a60-0000-4000-8000-0000"),
    ):
        assert (await client.post("/api/send", json=sent_body)).status_code == 422
    assert dict(runtime.services.collector.rejections) == {
        (SHOP, "request 422: plausible: $"): 1,
        (SHOP, "request 422: plausible: sd"): 1,
        ("", "request 422: plausible: p"): 1,
        ("", "request 400: plausible: body"): 1,
        (SHOP, "request 422: umami: screen"): 1,
        ("", "request 422: umami: website"): 1,
    }


async def test_umami_collector_refusals_are_named_as_sent(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    answer = await client.post("/api/send", json=umami_body(url="https://evil.example/"))
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "payload.url"
    # the tracker sends the path as url and the host apart: the host's refusal names it
    hosted = umami_body(url="/pricing", hostname="evil.example")
    answer = await client.post("/api/send", json=hosted)
    assert (answer.status_code, answer.json()["error"]["field"]) == (422, "payload.hostname")
    answer = await client.post("/api/send", json=umami_body(name="x" * 121))
    assert answer.json()["error"] == {
        "field": "payload.name",
        "reason": "is longer than 120 characters",
    }
    answer = await client.post("/api/send", json=umami_body(screen="99999x1"))
    assert answer.json()["error"]["field"] == "payload.screen"
    assert logged(runtime) == []


async def test_umami_cache_token_round_trip_holds_only_a_signed_site(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    first = await client.post("/api/send", json=umami_body())
    token = first.json()["cache"]
    assert "set-cookie" not in first.headers
    version, site, signature = token.split(".")
    assert version == "hs1" and umami._unb64(site) == SHOP.encode()  # nothing of the visitor
    keys = await umami._token_keys(_FakeRequest(runtime))  # type: ignore[arg-type]
    assert umami.token_site(keys, token) == SHOP
    # a newer script sends back the token; an older one the whole answer's text
    again = await client.post(
        "/api/send", json=umami_body(url=f"https://{SHOP}/a"), headers={"x-umami-cache": token}
    )
    assert again.status_code == 202 and again.json()["cache"] == token
    older = await client.post(
        "/api/send", json=umami_body(url=f"https://{SHOP}/b"), headers={"x-umami-cache": first.text}
    )
    assert older.status_code == 202 and umami.token_site(keys, first.text) == SHOP
    forged = f"hs1.{umami._b64(BLOG.encode())}.{signature}"
    assert umami.token_site(keys, forged) is None
    answered = await client.post(
        "/api/send", json=umami_body(url=f"https://{SHOP}/c"), headers={"x-umami-cache": forged}
    )
    assert answered.status_code == 202 and answered.json()["cache"] == token  # replaced
    assert umami.token_site(keys, "garbage") is None
    assert umami.token_site(keys, "{not json") is None
    assert len(logged(runtime)) == 4


class _FakeRequest:
    """Just enough of a request for ``_token_keys``: the app and its services."""

    def __init__(self, runtime: Runtime) -> None:
        self.app = type("App", (), {"state": type("State", (), {"services": runtime.services})})


def test_decode_uri_keeps_reserved_escapes() -> None:
    assert umami.decode_uri("/a%20b%3Fc%2Fd%C3%A9%ZZ%E2") == "/a b%3Fc%2Fdé%ZZ%E2"


# -- the site setting, CORS ------------------------------------------------------------------


async def test_umami_website_id_is_a_site_setting_unique_among_sites(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    assert runtime.services.gate is not None
    registry = runtime.services.gate.registry
    auth = bearer(await admin_key(registry))
    shown = (await client.get(f"/api/v1/sites/{SHOP}", headers=auth)).json()
    assert shown["umami_website_id"] == WEBSITE  # stored lowercased
    other = "0b7e4f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    taken = await client.patch(
        f"/api/v1/sites/{BLOG}", json={"umami_website_id": WEBSITE}, headers=auth
    )
    assert taken.status_code == 409 and taken.json()["error"]["field"] == "umami_website_id"
    bad = await client.patch(f"/api/v1/sites/{BLOG}", json={"umami_website_id": "x"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "umami_website_id"
    set_ = await client.patch(
        f"/api/v1/sites/{BLOG}", json={"umami_website_id": other}, headers=auth
    )
    assert set_.status_code == 200 and set_.json()["umami_website_id"] == other
    answer = await client.post(
        "/api/send", json=umami_body(website=other, url="https://blog.example/")
    )
    assert answer.status_code == 202, answer.text
    cleared = await client.patch(
        f"/api/v1/sites/{BLOG}", json={"umami_website_id": None}, headers=auth
    )
    assert cleared.json()["umami_website_id"] is None
    gone = await client.post(
        "/api/send", json=umami_body(website=other, url="https://blog.example/")
    )
    assert gone.status_code == 422  # the id no longer names a site
    added = await client.post(
        "/api/v1/sites", json={"site_id": "new.example", "umami_website_id": other}, headers=auth
    )
    assert added.status_code == 201 and added.json()["umami_website_id"] == other
    assert [e["site_id"] for e in logged(runtime)] == [BLOG]


def test_changed_site_checks_the_umami_website_id() -> None:
    site = changed_site(Site(SHOP), {"umami_website_id": f" {WEBSITE.upper()} "})
    assert site.umami_website_id == WEBSITE
    assert changed_site(site, {"umami_website_id": ""}).umami_website_id == ""
    for bad in ("not-a-uuid", 42, WEBSITE + "0"):
        with pytest.raises(QueryError) as refused:
            changed_site(site, {"umami_website_id": bad})
        assert refused.value.field == "umami_website_id"


@pytest.mark.parametrize("path", ["/api/event", "/api/send"])
async def test_trackers_get_cors_from_a_site_host_only(
    client: httpx.AsyncClient, path: str
) -> None:
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, x-umami-cache",
    }
    allowed = await client.options(path, headers={"origin": f"https://{SHOP}", **preflight})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == f"https://{SHOP}"
    assert "x-umami-cache" in allowed.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in allowed.headers
    refused = await client.options(path, headers={"origin": "https://evil.example", **preflight})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
