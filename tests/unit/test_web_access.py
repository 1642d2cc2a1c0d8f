"""The web layer of sites and access, in process (every role, memory adapters): setup,
login, session, CSRF, logout, login links, the sites API with keys, links and users, the
share page, CORS by site hosts and the metrics token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hitstream.bootstrap import Runtime, build
from hitstream.settings import Settings
from hitstream.web.app import create_app
from tests.access import admin_key, bearer

PASSWORD = "a long enough password"


def in_memory(folder: Path, **more: Any) -> Settings:
    """Settings with every adapter in memory (and ``more``)."""
    return Settings(
        data_dir=folder, log_url="memory://", store_url="memory://", cache_url="memory://", **more
    )


@pytest.fixture
def lines() -> list[str]:
    """What the runtime announced (first-run links)."""
    return []


@pytest.fixture
async def runtime(tmp_path: Path, lines: list[str]) -> AsyncIterator[Runtime]:
    runtime = build(in_memory(tmp_path, metrics_token="m-token", sites="listed.example"))
    runtime.announce = lines.append
    await runtime.start(run_processor=False)
    yield runtime
    await runtime.stop()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://hitstream.test") as c:
        yield c


def csrf_field(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def test_first_run_login_session_csrf_and_logout(
    lines: list[str], client: httpx.AsyncClient
) -> None:
    setup = next(line for line in lines if "/setup?token=" in line)
    assert setup.startswith("\n") and setup.endswith("\n")  # set apart from the log lines
    token = setup.split("/setup?token=", 1)[1].split()[0]
    assert (await client.get("/")).headers["location"] == "/login?next=/"
    for cut in (token[:-5], "hs_setup_bogus", "", token + "x"):  # a link not whole
        broken = await client.get("/setup", params={"token": cut})
        assert broken.status_code == 400 and "not whole" in broken.text
        assert "Create the admin account" not in broken.text
    page = await client.get(f"/setup?token={token}")
    assert page.status_code == 200 and "Create the admin account" in page.text
    # its URL holds the setup token: kept by no cache, named in no Referer
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    form = {"email": "Root@Example.com", "password": PASSWORD, "token": token}
    refused = await client.post("/setup", data={**form, "csrf": "forged"})
    assert refused.status_code == 403
    short = await client.post(
        "/setup", data={**form, "password": "short", "csrf": csrf_field(refused.text)}
    )
    assert short.status_code == 400 and "password" in short.text
    done = await client.post("/setup", data={**form, "csrf": csrf_field(short.text)})
    assert done.status_code == 303 and done.headers["location"] == "/sites?welcome=1"
    assert (await client.get("/setup")).status_code == 410  # used up: a user exists
    session = (await client.get("/api/v1/session")).json()
    assert (session["email"], session["role"]) == ("root@example.com", "admin")
    # the snippets: this process takes events itself, at its own address
    assert (session["collects"], session["events_url"]) == (True, "")
    assert (await client.get("/")).status_code == 200
    assert (await client.get("/sites")).status_code == 200
    # changes with the cookie need the CSRF secret
    created = await client.post("/api/v1/sites", json={"site_id": "new.example"})
    assert created.status_code == 403
    created = await client.post(
        "/api/v1/sites", json={"site_id": "new.example"}, headers={"X-CSRF-Token": session["csrf"]}
    )
    assert created.status_code == 201
    assert (await client.post("/logout")).status_code == 403  # no CSRF secret
    out = await client.post("/logout", headers={"X-CSRF-Token": session["csrf"]})
    assert out.status_code == 303
    assert (await client.get("/api/v1/session")).status_code == 401
    # and back in through the login form
    page = await client.get("/login?next=/sites")
    wrong = await client.post(
        "/login?next=/sites",
        data={
            "email": "root@example.com",
            "password": "nope-nope-nope",
            "csrf": csrf_field(page.text),
        },
    )
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    ok = await client.post(
        "/login?next=//evil.example",
        data={"email": "root@example.com", "password": PASSWORD, "csrf": csrf_field(wrong.text)},
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
    # logged in, the login page leads on instead of asking again (no open redirect either)
    again = await client.get("/login?next=/sites")
    assert again.status_code == 303 and again.headers["location"] == "/sites"
    away = await client.get("/login?next=//evil.example")
    assert away.status_code == 303 and away.headers["location"] == "/"
    # an admin cannot take their own admin role (as they cannot remove their own account)
    csrf = {"X-CSRF-Token": (await client.get("/api/v1/session")).json()["csrf"]}
    own = await client.patch(
        "/api/v1/users/root@example.com", json={"role": "viewer"}, headers=csrf
    )
    assert (own.status_code, own.json()["error"]["field"]) == (400, "role")
    assert (await client.get("/api/v1/session")).json()["role"] == "admin"


async def test_the_sites_api_keys_links_users_and_forget(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin = bearer(await admin_key(runtime.store))
    listed = (await client.get("/api/v1/sites", headers=admin)).json()["sites"]
    assert [s["site_id"] for s in listed] == ["listed.example"]  # from HITSTREAM_SITES
    made = await client.post(
        "/api/v1/sites",
        json={"site_id": "a.io", "timezone": "Europe/Berlin", "allowed_hosts": ["a.io"]},
        headers=admin,
    )
    assert made.status_code == 201 and made.json()["allowed_hosts"] == ["a.io"]
    again = await client.post("/api/v1/sites", json={"site_id": "a.io"}, headers=admin)
    assert again.status_code == 409
    cased = await client.post("/api/v1/sites", json={"site_id": "A.IO"}, headers=admin)
    assert (cased.status_code, cased.json()["error"]["field"]) == (409, "site_id")  # one domain
    bad = await client.post("/api/v1/sites", json={"site_id": "a b"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "site_id"
    patched = await client.patch("/api/v1/sites/a.io", json={"public": True}, headers=admin)
    assert patched.json()["public"] is True and patched.json()["timezone"] == "Europe/Berlin"
    assert (await client.get("/api/v1/sites/a.io")).status_code == 200  # public now
    assert (await client.get("/share/a.io")).status_code == 200
    # keys
    key = (
        await client.post("/api/v1/sites/a.io/keys", json={"scope": "admin"}, headers=admin)
    ).json()
    site_admin = bearer(key["key"])
    keys = (await client.get("/api/v1/sites/a.io/keys", headers=site_admin)).json()["keys"]
    assert [k["key_id"] for k in keys] == [key["key_id"]] and "key_hash" not in keys[0]
    assert (
        await client.get("/api/v1/sites/listed.example/keys", headers=site_admin)
    ).status_code == 403
    assert (await client.get("/api/v1/users", headers=site_admin)).status_code == 403
    assert (await client.delete("/api/v1/keys/key_nope", headers=admin)).status_code == 404
    assert (await client.delete("/api/v1/keys/key_nope")).status_code == 401
    nope = await client.delete("/api/v1/keys/key_nope", headers=site_admin)  # absent or not
    assert (nope.status_code, nope.json()["error"]["field"]) == (403, "key_id")  # theirs: 403
    # links
    link = (
        await client.post("/api/v1/sites/a.io/links", json={"name": "x"}, headers=site_admin)
    ).json()
    assert (await client.get(link["path"])).status_code == 200
    assert len((await client.get("/api/v1/sites/a.io/links", headers=admin)).json()["links"]) == 1
    gone = await client.delete(f"/api/v1/sites/a.io/links/{link['link_id']}", headers=admin)
    assert gone.status_code == 200
    assert (await client.delete("/api/v1/sites/a.io/links/nope", headers=admin)).status_code == 404
    # users
    user = {"email": "v@x.io", "role": "viewer", "sites": ["a.io"], "password": PASSWORD}
    assert (await client.post("/api/v1/users", json=user, headers=admin)).status_code == 201
    assert (await client.post("/api/v1/users", json=user, headers=admin)).status_code == 409
    changed = await client.patch(
        "/api/v1/users/v@x.io", json={"sites": ["a.io", "listed.example"]}, headers=admin
    )
    assert changed.json()["sites"] == ["a.io", "listed.example"]
    assert (await client.patch("/api/v1/users/no@x.io", json={}, headers=admin)).status_code == 404
    unknown = await client.patch(
        "/api/v1/users/v@x.io", json={"sites": ["a.io", "later.example"]}, headers=admin
    )  # access to a domain nobody registered would come with whoever registers it
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (400, "sites")
    listed_users = (await client.get("/api/v1/users", headers=admin)).json()["users"]
    assert [u["email"] for u in listed_users] == ["v@x.io"]
    assert (await client.delete("/api/v1/users/v@x.io", headers=admin)).status_code == 200
    assert (await client.delete("/api/v1/users/v@x.io", headers=admin)).status_code == 404
    # a path that is no site id: the pattern quoted as it is (it read "[a-za-z0-9...")
    star = await client.post("/api/v1/sites/*/keys", json={"scope": "read"}, headers=admin)
    assert (star.status_code, star.json()["error"]["field"]) == (400, "path.site_id")
    assert "A-Za-z0-9" in star.json()["error"]["reason"]
    # there is always an admin user: the last one is neither removed nor demoted
    for email in ("a1@x.io", "a2@x.io"):
        boss: dict[str, object] = {
            "email": email,
            "role": "admin",
            "sites": [],
            "password": PASSWORD,
        }
        assert (await client.post("/api/v1/users", json=boss, headers=admin)).status_code == 201
    assert (await client.delete("/api/v1/users/a1@x.io", headers=admin)).status_code == 200
    last = await client.delete("/api/v1/users/a2@x.io", headers=admin)
    assert (last.status_code, last.json()["error"]["field"]) == (409, "email")
    demoted = await client.patch("/api/v1/users/a2@x.io", json={"role": "viewer"}, headers=admin)
    assert (demoted.status_code, demoted.json()["error"]["field"]) == (409, "role")
    # a refused password changes nothing else of the request
    both = {"role": "admin", "sites": ["a.io"], "password": "short"}
    refused = await client.patch("/api/v1/users/a2@x.io", json=both, headers=admin)
    assert (refused.status_code, refused.json()["error"]["field"]) == (400, "password")
    [kept] = (await client.get("/api/v1/users", headers=admin)).json()["users"]
    assert (kept["email"], kept["sites"]) == ("a2@x.io", [])
    # forget and remove
    forgot = await client.delete("/api/v1/sites/a.io/users/u1", headers=site_admin)
    assert forgot.json() == {"site_id": "a.io", "user_id": "u1", "events_deleted": 0}
    assert (await client.delete("/api/v1/sites/a.io", headers=site_admin)).status_code == 200
    assert (await client.get("/api/v1/sites/a.io", headers=admin)).status_code == 404


async def test_cors_by_site_hosts_and_the_metrics_token(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    def preflight(path: str, origin: str) -> dict[str, str]:
        return {"origin": origin, "access-control-request-method": "POST"}

    ok = await client.options("/api/v1/events", headers=preflight("", "https://www.listed.example"))
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://www.listed.example"
    no = await client.options("/api/v1/events", headers=preflight("", "https://evil.example"))
    assert no.status_code == 403 and "access-control-allow-origin" not in no.headers
    sent = await client.post(
        "/api/v1/events",
        json={"site_id": "listed.example", "path": "/"},
        headers={"origin": "https://evil.example"},
    )
    assert sent.status_code == 422 and "access-control-allow-origin" not in sent.headers
    assert (await client.get("/metrics")).status_code == 401
    assert (await client.get("/metrics", headers=bearer("m-token"))).status_code == 200
    unknown = await client.post(
        "/api/v1/events", json={"site_id": "listed.example"}, headers=bearer("hs_key_nope")
    )
    assert unknown.status_code == 401
    scheme = await client.get("/api/v1/sites", headers={"Authorization": "Basic abc"})
    assert (
        scheme.status_code == 401 and scheme.json()["error"]["reason"] == "must be 'Bearer <key>'"
    )


async def test_a_login_link_logs_in_as_its_viewer(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    assert runtime.accounts is not None
    token = await runtime.accounts.login_link("demo@x.io", ["listed.example"])
    assert await runtime.accounts.needs_setup()  # a viewer by link is no admin: setup stays
    answer = await client.get(f"/login/link?token={token}")
    assert answer.status_code == 303 and answer.headers["location"] == "/?site=listed.example"
    assert (await client.get("/api/v1/session")).json()["sites"] == ["listed.example"]
    assert (await client.get("/login/link?token=nope")).status_code == 403


def test_https_is_believed_from_the_connection_or_a_trusted_proxy_only() -> None:
    import ipaddress

    from starlette.requests import Request

    from hitstream.web.auth import is_https

    def request(scheme: str, peer: str, proto: str = "") -> Request:
        headers = [(b"x-forwarded-proto", proto.encode())] if proto else []
        return Request(
            {"type": "http", "scheme": scheme, "client": (peer, 1), "headers": headers,
             "path": "/", "query_string": b"", "server": ("h", 80), "method": "GET"}
        )  # fmt: skip

    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    assert is_https(request("https", "1.2.3.4"), proxies)
    assert is_https(request("http", "10.1.2.3", "https"), proxies)
    assert not is_https(request("http", "1.2.3.4", "https"), proxies)  # not a trusted proxy
    assert not is_https(request("http", "10.1.2.3", "https"), [])
    assert not is_https(request("http", "10.1.2.3", "http"), proxies)


async def test_a_web_process_alone_says_where_events_go(tmp_path: Path) -> None:
    """Scale-out: ``hitstream web`` serves the tracker but takes no events. Its snippets
    point at HITSTREAM_COLLECTOR_URL, and an event sent to it is refused saying why (it was
    a bare "not found", and the snippets sent every event there)."""
    settings = in_memory(tmp_path, collector_url="https://collect.example.com/")
    runtime = build(settings, frozenset({"web"}))
    assert runtime.services.collector is None
    assert runtime.services.events_url == "https://collect.example.com/api/v1/events"
    transport = httpx.ASGITransport(app=create_app(runtime.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://hitstream.test") as c:
        for path in ("/api/v1/events", "/api/event", "/api/send"):
            sent = await c.post(path, json={"site_id": "listed.example", "path": "/"})
            assert sent.status_code == 404, path
            assert sent.json()["error"]["field"] == "path"
            assert "no collector role" in sent.json()["error"]["reason"]
        assert (await c.get("/js/hitstream.js")).status_code == 200  # the tracker is here


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("ftp://collect.example.com", "http(s) URL"),
        ("https://", "http(s) URL"),
        ("https://c.example/?x=1", "without a query"),
        ("https://user:pw@c.example", "credentials"),
        ('https://c.example/"><script>', "quotes"),
        ("https://c.example/api/v1/events", "is added to it"),
    ],
)
def test_a_collector_url_must_be_a_web_address(given: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        Settings(collector_url=given)
    assert Settings(collector_url=" https://c.example/in/ ").events_url() == (
        "https://c.example/in/api/v1/events"
    )
    assert Settings().events_url() == ""
