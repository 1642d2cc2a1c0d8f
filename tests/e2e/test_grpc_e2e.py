"""Real processes over gRPC: ``hitstream serve --grpc-port`` on the embedded parts, and a
``hitstream grpc`` role beside a ``serve`` on one PostgreSQL database. A client made from the
generated stubs gets the HTTP API's numbers, which are the counts of the events sent; a call
without a key is refused; health and reflection answer; a SIGTERM stops both servers cleanly."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hitstream.rpc.v1 import stats_pb2 as pb
from hitstream.rpc.v1.stats_pb2_grpc import StatsStub
from tests.server import ServerProcess, free_port

pytestmark = pytest.mark.e2e

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
VISITORS = (("ann", "81.2.69.20"), ("bob", "81.2.69.21"), ("", "81.2.69.22"), ("", "81.2.69.23"))
PAGES = ("/", "/pricing", "/docs")


def traffic(site: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(user, ip, event) for every event sent: each visitor on some pages, several types."""
    sent = []
    for v, (user, ip) in enumerate(VISITORS):
        for p, path in enumerate(PAGES[: v % 3 + 1]):
            for n in range(p + 1):
                kind = ("pageview", "click")[(v + n) % 2]
                event: dict[str, Any] = {
                    "site_id": site,
                    "type": kind,
                    "url": f"https://{site}{path}",
                }
                if user:
                    event["user_id"] = user
                sent.append((user, ip, event))
    return sent


def send(server: ServerProcess, site: str) -> list[tuple[str, str, dict[str, Any]]]:
    server.add_site(site)
    sent = traffic(site)
    for user, ip in VISITORS:
        batch = [e for u, i, e in sent if (u, i) == (user, ip)]
        answer = httpx.post(
            f"{server.url}/api/v1/events",
            json=batch,
            headers={"user-agent": CHROME, "x-forwarded-for": ip},
        )
        assert answer.status_code == 202, answer.text
    return sent


def http_stats(server: ServerProcess, kind: str, **params: Any) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/v1/stats/{kind}", params=params, headers=server.headers)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def days() -> tuple[dict[str, Any], dict[str, Any]]:
    """A custom period around now (gRPC fields, HTTP parameters): it holds every event sent
    and does not move with the clock."""
    today = datetime.now(UTC).date()
    first, last = str(today - timedelta(days=1)), str(today + timedelta(days=1))
    return (
        {"period": "custom", "date_from": first, "date_to": last},
        {"period": "custom", "from": first, "to": last},
    )


def stored(server: ServerProcess, site: str, count: int, http_days: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        body = http_stats(server, "aggregate", site_id=site, metrics="events", **http_days)
        if body["results"]["events"]["value"] >= count or time.monotonic() > deadline:
            assert body["results"]["events"]["value"] == count
            return
        time.sleep(0.05)


def channel_to(port: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        yield channel


def same_numbers(
    channel: grpc.Channel,
    key: str,
    http: ServerProcess,
    site: str,
    sent: list[tuple[str, str, dict[str, Any]]],
) -> None:
    """Every method against the HTTP API's answer and the counts of ``sent``."""
    stub = StatsStub(channel)
    auth = (("authorization", f"Bearer {key}"),)
    grpc_days, http_days = days()
    visitor = {(u or ip) for u, ip, _ in sent}
    path_of = {id(e): e["url"].split(site, 1)[1] for _, _, e in sent}

    agg = stub.Aggregate(
        pb.AggregateRequest(site_id=site, metrics=["events", "pageviews", "visitors"], **grpc_days),
        metadata=auth,
    )
    want = http_stats(
        http, "aggregate", site_id=site, metrics="events,pageviews,visitors", **http_days
    )
    assert {k: v.value for k, v in agg.results.items()} == {
        k: v["value"] for k, v in want["results"].items()
    }
    assert (agg.range.from_ms, agg.range.to_ms) == (want["from"], want["to"])
    assert agg.results["events"].value == len(sent)
    assert agg.results["pageviews"].value == sum(e["type"] == "pageview" for _, _, e in sent)
    assert agg.results["visitors"].value == len(visitor)

    series = stub.Timeseries(
        pb.TimeseriesRequest(site_id=site, interval="hour", metrics=["events"], **grpc_days),
        metadata=auth,
    )
    want = http_stats(
        http, "timeseries", site_id=site, interval="hour", metrics="events", **http_days
    )
    assert [(p.bucket, p.metrics["events"]) for p in series.results] == [
        (p["bucket"], p["events"]) for p in want["results"]
    ]
    assert sum(p.metrics["events"] for p in series.results) == len(sent)

    sources = stub.Breakdown(
        pb.BreakdownRequest(
            site_id=site,
            property="user_id",
            metrics=["events"],
            filters="event_type==click",
            **grpc_days,
        ),
        metadata=auth,
    )
    want = http_stats(
        http,
        "breakdown",
        site_id=site,
        property="user_id",
        metrics="events",
        filters="event_type==click",
        **http_days,
    )
    assert [(r.value, r.metrics["events"]) for r in sources.results] == [
        (r["value"], r["events"]) for r in want["results"]
    ]
    assert {r.value: r.metrics["events"] for r in sources.results} == Counter(
        u for u, _, e in sent if e["type"] == "click"
    )

    assert stub.Realtime(pb.RealtimeRequest(site_id=site), metadata=auth).visitors == len(visitor)
    assert http_stats(http, "realtime", site_id=site)["visitors"] == len(visitor)

    users = stub.UserEvents(pb.UserEventsRequest(site_id=site, **grpc_days), metadata=auth)
    want = http_stats(
        http, "breakdown", site_id=site, property="user_id", metrics="events,visitors", **http_days
    )
    assert [(r.value, r.events, r.visitors) for r in users.results] == [
        (r["value"], r["events"], r["visitors"]) for r in want["results"]
    ]
    assert {r.value: r.events for r in users.results} == Counter(u for u, _, _ in sent)

    pages = stub.PageEvents(pb.PageEventsRequest(site_id=site, **grpc_days), metadata=auth)
    want = http_stats(
        http, "breakdown", site_id=site, property="page", metrics="events,visitors", **http_days
    )
    assert [(r.value, r.events, r.visitors) for r in pages.results] == [
        (r["value"], r["events"], r["visitors"]) for r in want["results"]
    ]
    on_page: dict[str, set[str]] = defaultdict(set)
    for u, ip, e in sent:
        on_page[path_of[id(e)]].add(u or ip)
    assert {r.value: (r.events, r.visitors) for r in pages.results} == {
        path: (sum(path_of[id(e)] == path for _, _, e in sent), len(who))
        for path, who in on_page.items()
    }
    one = stub.PageEvents(
        pb.PageEventsRequest(site_id=site, page_url=f"https://{site}/pricing", **grpc_days),
        metadata=auth,
    )
    assert [r.value for r in one.results] == ["/pricing"]

    with pytest.raises(grpc.RpcError) as refused:
        stub.UserEvents(pb.UserEventsRequest(site_id=site, **grpc_days))  # no key
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as bad:
        stub.Breakdown(pb.BreakdownRequest(site_id=site, property="colour"), metadata=auth)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (bad.value.details() or "").startswith("property: ")


def health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "hitstream.v1.Stats"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = list(
        reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    )
    assert "hitstream.v1.Stats" in {s.name for s in answers[0].list_services_response.service}


def closed(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
        except grpc.FutureTimeoutError:
            return True
    return False


def test_serve_with_a_grpc_port(tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(tmp_path / "data", args=["--grpc-port", str(port)]).start()
    try:
        site = f"g{uuid.uuid4().hex[:8]}.io"
        sent = send(server, site)
        stored(server, site, len(sent), days()[1])
        for channel in channel_to(port):
            same_numbers(channel, server.admin_key, server, site, sent)
            health_and_reflection(channel)
        assert server.terminate(timeout=60) == 0  # gRPC stopped with the process, cleanly
        assert closed(port)
    finally:
        server.kill()


def test_the_grpc_role_beside_serve_on_postgresql(tmp_path: Path, pg_database: str) -> None:
    pytest.importorskip("psycopg")
    env = {"HITSTREAM_STORE_URL": pg_database}
    serve = ServerProcess(tmp_path / "serve", env=env).start()
    port = free_port()
    role = ServerProcess(
        tmp_path / "grpc", env=env, command="grpc", args=["--grpc-port", str(port)]
    )
    try:
        role.start()
        ready = httpx.get(f"{role.url}/readyz").json()
        assert set(ready["checks"]) == {"store", "cache"}, ready  # no log, no fan-out
        assert httpx.get(f"{role.url}/api/v1/stats/realtime").status_code == 404  # gRPC only
        site = f"r{uuid.uuid4().hex[:8]}.io"
        sent = send(serve, site)
        stored(serve, site, len(sent), days()[1])
        for channel in channel_to(port):
            # a key made through serve's registry is honoured by the grpc process
            same_numbers(channel, serve.admin_key, serve, site, sent)
            health_and_reflection(channel)
        assert role.terminate(timeout=60) == 0
        assert closed(port)
    finally:
        role.kill()
        try:
            serve.terminate(timeout=60)
        finally:
            serve.kill()
