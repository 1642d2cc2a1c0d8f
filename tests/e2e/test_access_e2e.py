"""Sites and access over HTTP, against a real ``hitstream serve``: every read path refuses
strangers (401) and other sites' credentials (403) and answers the right ones (200); the live
WebSocket is refused with a code that says why, then accepted; unregistered sites and foreign
hosts are refused by name; ingestion limits answer 429 with Retry-After; forgetting a user
leaves stats equal to counts made by hand from what was sent without them; refusals survive
a restart; CSRF and the metrics token are enforced.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.server import ServerProcess

pytestmark = pytest.mark.e2e

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
BASE = {"user-agent": FIREFOX}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("access") / "data").start()
    yield server
    try:
        server.terminate(timeout=60)
    finally:
        server.kill()


def new_site(server: ServerProcess, **settings: object) -> str:
    site = f"s{uuid.uuid4().hex[:10]}.example"
    server.add_site(site, **settings)
    return site


def make_key(server: ServerProcess, site: str, scope: str) -> str:
    answer = httpx.post(
        f"{server.url}/api/v1/sites/{site}/keys",
        json={"scope": scope, "name": "test"},
        headers=server.headers,
    )
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    assert key.startswith("hs_key_")
    return key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def send(server: ServerProcess, events: list[dict[str, Any]], **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/events", json=events, headers={**BASE, **headers})


def read_paths(site: str) -> list[str]:
    """Every read endpoint of one site."""
    return [
        f"/api/v1/stats/aggregate?site_id={site}&period=day",
        f"/api/v1/stats/timeseries?site_id={site}&period=day",
        f"/api/v1/stats/breakdown?site_id={site}&period=day&property=page",
        f"/api/v1/stats/realtime?site_id={site}",
        f"/api/v1/sites/{site}",
        f"/api/v1/quality?site_id={site}",
        f"/api/v1/alerts?site_id={site}",
        f"/api/v1/sites/{site}/goals",
        f"/api/v1/sites/{site}/funnels",
        f"/api/v1/stats/funnel?site_id={site}&period=day&step=page==/&step=page==/a",
    ]


def test_every_read_path_is_401_403_or_200_by_credential(server: ServerProcess) -> None:
    mine, theirs = new_site(server), new_site(server)
    mine_key, theirs_key = make_key(server, mine, "read"), make_key(server, theirs, "read")
    write_key = make_key(server, mine, "write")
    for path in read_paths(mine):
        url = f"{server.url}{path}"
        nobody = httpx.get(url)
        assert nobody.status_code == 401, (path, nobody.text)
        assert nobody.json()["error"]["field"] == "authorization"
        assert nobody.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(url, headers=auth("hs_key_wrong")).status_code == 401, path
        assert httpx.get(url, headers=auth(theirs_key)).status_code == 403, path
        assert httpx.get(url, headers=auth(write_key)).status_code == 403, path  # writes only
        assert httpx.get(url, headers=auth(mine_key)).status_code == 200, path
    listed = httpx.get(f"{server.url}/api/v1/sites", headers=auth(mine_key)).json()["sites"]
    assert [s["site_id"] for s in listed] == [mine]
    assert httpx.get(f"{server.url}/api/v1/sites").status_code == 401
    for admin_only in ("/api/v1/live/stats", "/api/v1/quality", "/api/v1/users"):
        assert httpx.get(f"{server.url}{admin_only}").status_code == 401, admin_only
        assert httpx.get(f"{server.url}{admin_only}", headers=auth(mine_key)).status_code == 403
        assert httpx.get(f"{server.url}{admin_only}", headers=server.headers).status_code == 200
    # an admin asking for a site that does not exist learns so; nobody else does
    ghost = f"{server.url}/api/v1/stats/aggregate?site_id=ghost.example"
    assert httpx.get(ghost).status_code == 401
    assert httpx.get(ghost, headers=server.headers).status_code == 404
    # the open paths stay open
    for path in ("/healthz", "/readyz", "/js/hitstream.js", "/openapi.json", "/metrics"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path


def frames_until_close(url: str, **kwargs: Any) -> tuple[list[dict[str, Any]], int | None]:
    frames: list[dict[str, Any]] = []
    with connect(url, open_timeout=10, **kwargs) as ws:
        try:
            while True:
                frames.append(json.loads(ws.recv(timeout=10)))
                if frames[-1]["type"] == "snapshot":
                    return frames, None
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None


def test_the_live_socket_is_refused_with_a_reason_then_accepted(server: ServerProcess) -> None:
    site, other = new_site(server), new_site(server)
    key, other_key = make_key(server, site, "read"), make_key(server, other, "read")
    url = server.url.replace("http://", "ws://") + f"/api/v1/live?site_id={site}&period=day"
    frames, code = frames_until_close(url)
    assert code == 4401 and frames[0]["type"] == "error"
    _, code = frames_until_close(url, additional_headers=auth(other_key))
    assert code == 4403
    _, code = frames_until_close(url, subprotocols=["hitstream", "hs_key_forged"])
    assert code == 4401
    frames, code = frames_until_close(url, additional_headers=auth(key))
    assert code is None and frames[-1]["type"] == "snapshot"
    frames, code = frames_until_close(url, subprotocols=["hitstream", key])
    assert code is None and frames[-1]["type"] == "snapshot"


def test_unregistered_sites_and_foreign_hosts_are_refused_by_name(server: ServerProcess) -> None:
    site = new_site(server)
    cases = [
        ({"site_id": "never-added.example", "path": "/"}, {}, "site_id"),
        ({"site_id": site, "url": "https://evil.example/x"}, {}, "url"),
        ({"site_id": site, "path": "/"}, {"origin": "https://evil.example"}, "origin"),
        ({"site_id": site, "path": "/", "ip": "1.2.3.4"}, {}, "ip"),  # needs a write key
    ]
    for event, headers, field in cases:
        answer = send(server, [event], **headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == field, answer.text
    good = send(server, [{"site_id": site, "url": f"https://www.{site}/"}])
    assert good.status_code == 202
    quality = httpx.get(
        f"{server.url}/api/v1/quality", params={"site_id": site}, headers=server.headers
    ).json()
    assert quality["rejected"]["url: its host is not an allowed host of the site"] == 1
    assert quality["rejected"]["origin: is not an allowed host of the site"] == 1


def test_a_new_site_and_a_new_key_work_at_once(server: ServerProcess) -> None:
    site = f"s{uuid.uuid4().hex[:10]}.example"
    assert send(server, [{"site_id": site, "path": "/"}]).status_code == 422
    server.add_site(site)
    deadline = time.monotonic() + 3
    while send(server, [{"site_id": site, "path": "/"}]).status_code != 202:
        assert time.monotonic() < deadline, "a new site was not accepted within ~1 s"
        time.sleep(0.1)
    key = make_key(server, site, "read")
    aggregate = f"{server.url}/api/v1/stats/aggregate?site_id={site}"
    assert httpx.get(aggregate, headers=auth(key)).status_code == 200
    key_id = next(
        k["key_id"]
        for k in httpx.get(f"{server.url}/api/v1/sites/{site}/keys", headers=server.headers).json()[
            "keys"
        ]
        if k["prefix"] == key[: len(k["prefix"])]
    )
    assert httpx.delete(f"{server.url}/api/v1/keys/{key_id}", headers=server.headers).is_success
    deadline = time.monotonic() + 3
    while httpx.get(aggregate, headers=auth(key)).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key still worked after ~1 s"
        time.sleep(0.1)


def wait_events(server: ServerProcess, site: str, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        body: dict[str, Any] = httpx.get(
            f"{server.url}/api/v1/stats/aggregate",
            params={
                "site_id": site,
                "period": "day",
                "metrics": "events,pageviews,visitors,visits",
            },
            headers=server.headers,
        ).json()
        if body["results"]["events"]["value"] >= count or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_forgetting_a_user_leaves_exact_stats(server: ServerProcess) -> None:
    site = new_site(server)
    alice = [{"site_id": site, "path": p, "user_id": "alice"} for p in ("/", "/a", "/b")]
    bob = [{"site_id": site, "path": p, "user_id": "bob"} for p in ("/", "/a")]
    anonymous = [{"site_id": site, "path": "/b"}]
    assert send(server, alice + bob + anonymous).status_code == 202
    wait_events(server, site, 6)
    answer = httpx.delete(f"{server.url}/api/v1/sites/{site}/users/alice", headers=server.headers)
    assert answer.status_code == 200 and answer.json()["events_deleted"] == 3
    # by hand, from what was sent without alice: bob (2 pageviews, one visit), one anonymous
    after = wait_events(server, site, 0)["results"]
    assert {k: v["value"] for k, v in after.items()} == {
        "events": 3, "pageviews": 3, "visitors": 2, "visits": 2
    }  # fmt: skip
    pages = httpx.get(
        f"{server.url}/api/v1/stats/breakdown",
        params={"site_id": site, "period": "day", "property": "page", "metrics": "pageviews"},
        headers=server.headers,
    ).json()["results"]
    assert {r["value"]: r["pageviews"] for r in pages} == {"/": 1, "/a": 1, "/b": 1}
    # forgetting is for those who manage the site
    reader = make_key(server, site, "read")
    refused = httpx.delete(f"{server.url}/api/v1/sites/{site}/users/bob", headers=auth(reader))
    assert refused.status_code == 403


def test_a_write_key_sets_the_visitor_address_and_is_not_limited_per_ip(
    server: ServerProcess,
) -> None:
    site = new_site(server)
    writer = make_key(server, site, "write")
    event = {"site_id": site, "path": "/", "ip": "81.2.69.142", "user_agent": FIREFOX}
    assert send(server, [event], **auth(writer)).status_code == 202
    other = make_key(server, new_site(server), "write")
    refused = send(server, [event], **auth(other))  # another site's key
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "site_id"
    wait_events(server, site, 1)
    countries = httpx.get(
        f"{server.url}/api/v1/stats/breakdown",
        params={"site_id": site, "period": "day", "property": "country", "metrics": "events"},
        headers=server.headers,
    ).json()["results"]
    assert countries == [{"value": "GB", "events": 1}]  # from the given address, not loopback


def test_public_sites_and_shared_links_are_read_only(server: ServerProcess) -> None:
    public, private = new_site(server, public=True), new_site(server)
    assert httpx.get(f"{server.url}/api/v1/stats/aggregate?site_id={public}").status_code == 200
    assert httpx.get(f"{server.url}/share/{public}").status_code == 200
    assert httpx.get(f"{server.url}/share/{private}").status_code == 404
    link = httpx.post(
        f"{server.url}/api/v1/sites/{private}/links", json={"name": "board"}, headers=server.headers
    ).json()
    token = link["token"]
    assert httpx.get(f"{server.url}{link['path']}").status_code == 200
    stats = f"{server.url}/api/v1/stats/aggregate?site_id={private}&auth={token}"
    assert httpx.get(stats).status_code == 200
    assert (
        httpx.patch(
            f"{server.url}/api/v1/sites/{private}?auth={token}", json={"public": True}
        ).status_code
        == 403
    )
    other = f"{server.url}/api/v1/stats/aggregate?site_id={public}x&auth={token}"
    assert httpx.get(other).status_code in (403, 404)
    httpx.delete(
        f"{server.url}/api/v1/sites/{private}/links/{link['link_id']}", headers=server.headers
    )
    assert httpx.get(stats).status_code == 401


def form_token(browser: httpx.Client) -> str:
    """A fresh login form's CSRF field (its cookie is set on the client)."""
    page = browser.get("/login").text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_login_needs_the_form_token_and_api_changes_need_the_csrf_secret(
    server: ServerProcess,
) -> None:
    email = f"u{uuid.uuid4().hex[:6]}@example.com"
    created = httpx.post(
        f"{server.url}/api/v1/users",
        json={"email": email, "role": "admin", "password": "correct horse battery"},
        headers=server.headers,
    )
    assert created.status_code == 201, created.text
    with httpx.Client(base_url=server.url) as browser:
        form = browser.get("/login")
        assert form.status_code == 200
        forged = browser.post(
            "/login", data={"email": email, "password": "correct horse battery", "csrf": "x"}
        )
        assert forged.status_code == 403 and "hitstream_session" not in browser.cookies
        token = form_token(browser)
        wrong = browser.post("/login", data={"email": email, "password": "nope", "csrf": token})
        assert wrong.status_code == 401
        token = form_token(browser)
        ok = browser.post(
            "/login", data={"email": email, "password": "correct horse battery", "csrf": token}
        )
        assert ok.status_code == 303 and "hitstream_session" in browser.cookies
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        site = new_site(server)
        without = browser.patch(f"/api/v1/sites/{site}", json={"public": True})
        assert without.status_code == 403 and without.json()["error"]["field"] == "csrf"
        csrf = browser.get("/api/v1/session").json()["csrf"]
        changed = browser.patch(
            f"/api/v1/sites/{site}", json={"public": True}, headers={"X-CSRF-Token": csrf}
        )
        assert changed.status_code == 200 and changed.json()["public"] is True
        assert browser.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
        assert browser.get("/api/v1/session").status_code == 401


def test_login_is_throttled(server: ServerProcess) -> None:
    email = f"t{uuid.uuid4().hex[:6]}@example.com"
    # an address of its own (through the trusted proxy): other tests' failed logins from
    # 127.0.0.1 count against that address, which no success clears
    address = {"x-forwarded-for": f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
    with httpx.Client(base_url=server.url) as browser:
        statuses = []
        for _ in range(5):
            token = form_token(browser)
            answer = browser.post(
                "/login",
                data={"email": email, "password": "wrong-password", "csrf": token},
                headers=address,
            )
            statuses.append(answer.status_code)
        assert statuses[:3] == [401, 401, 401]  # three free tries, then a wait
        assert statuses[3] == 429 and int(answer.headers["retry-after"]) >= 1


def test_rate_limits_answer_429_with_retry_after_and_refusals_survive_a_restart(
    tmp_path: Path,
) -> None:
    env = {"HITSTREAM_INGEST_RATE_PER_IP": "0.01", "HITSTREAM_INGEST_BURST_PER_IP": "3"}
    first = ServerProcess(tmp_path / "data", env=env).start()
    try:
        first.add_site("limits.example")
        event = {"site_id": "limits.example", "path": "/"}
        headers = {"x-forwarded-for": "203.0.113.9"}
        answers = [send(first, [event], **headers) for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [202, 202, 202]
        assert answers[3].status_code == 429
        assert answers[3].json()["error"]["field"] == "rate"
        assert int(answers[3].headers["retry-after"]) >= 1
        assert send(first, [event], **{"x-forwarded-for": "203.0.113.10"}).status_code == 202
        key = first.admin_key
        time.sleep(1.0)  # the refusal counts are flushed twice a second
    finally:
        first.terminate(timeout=60)
        first.kill()
    second = ServerProcess(tmp_path / "data", env=env, port=first.port)
    second.admin_key = key
    second.start()
    try:
        quality = httpx.get(
            f"{second.url}/api/v1/quality",
            params={"site_id": "limits.example"},
            headers=second.headers,
        ).json()
        assert quality["rejected"] == {"rate limit: this client address": 1}
    finally:
        second.terminate(timeout=60)
        second.kill()


def test_a_metrics_token_guards_metrics(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", env={"HITSTREAM_METRICS_TOKEN": "m-secret-123"})
    server.start()
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        assert httpx.get(f"{server.url}/metrics", headers=auth("nope")).status_code == 401
        ok = httpx.get(f"{server.url}/metrics", headers=auth("m-secret-123"))
        assert ok.status_code == 200 and "hitstream_events_accepted_total" in ok.text
        stats = httpx.get(
            f"{server.url}/api/v1/stats/aggregate?site_id=x", headers=auth("m-secret-123")
        )
        assert stats.status_code == 403  # the metrics token reads metrics, nothing else
    finally:
        server.terminate(timeout=60)
        server.kill()
