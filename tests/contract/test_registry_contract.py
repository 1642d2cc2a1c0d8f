"""The registry contract: memory, DuckDB and PostgreSQL keep sites, users, keys, logins,
shared links, login links and refusals alike; forgetting a user, per-site retention and
removing a site leave stats as if the deleted events had never arrived.

The "as if never arrived" tests compare a store against a second store of the same adapter
that was only ever given the events that remain: an expectation computed without the code
under test's deletion paths (on PostgreSQL the queries span whole half hours, so they are
answered from the rollups the deletion corrected).
"""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from hitstream.domain.errors import QueryError
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.sessions import Sessionizer
from hitstream.domain.sites import ApiKey, Login, LoginToken, SharedLink, Site, User
from hitstream.domain.stats import Range, StatsQuery
from hitstream.domain.visitors import user_hash
from hitstream.errors import Conflict
from hitstream.stores.base import Store, WriteBatch
from hitstream.stores.duckdb import DuckDBStore
from tests.contract.conftest import StoreAdapter

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T = int(datetime(2026, 5, 4, 8, tzinfo=UTC).timestamp() * 1000)  # a whole half hour


async def test_sites_round_trip_and_conflict(store: Store) -> None:
    v0 = await store.registry_version()
    site = Site("a.io", "Europe/Berlin", ("a.io", "*.cdn.io"), 30, True, 7, {"goals": ["x"]})
    await store.add_site(site)
    assert await store.get_site("a.io") == site
    with pytest.raises(Conflict) as caught:
        await store.add_site(Site("a.io"))
    assert caught.value.field == "site_id"
    await store.add_site(Site("b.io"))
    assert [s.site_id for s in await store.registered_sites()] == ["a.io", "b.io"]
    changed = Site("a.io", "UTC", (), 0, False, 7, {})
    assert await store.update_site(changed)
    assert await store.get_site("a.io") == changed
    assert not await store.update_site(Site("nope.io"))
    assert await store.get_site("nope.io") is None
    assert await store.registry_version() > v0


async def test_the_umami_website_id_round_trips_and_is_unique(store: Store) -> None:
    website = "4f9a2c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"
    with_id = Site("a.io", umami_website_id=website)
    await store.add_site(with_id)
    await store.add_site(Site("b.io"))
    await store.add_site(Site("c.io"))  # sites without an id do not clash with each other
    assert await store.get_site("a.io") == with_id
    assert (await store.get_site("b.io")) == Site("b.io")
    for attempt in (
        store.add_site(Site("d.io", umami_website_id=website)),
        store.update_site(Site("b.io", umami_website_id=website)),
    ):
        with pytest.raises(Conflict) as caught:
            await attempt
        assert caught.value.field == "umami_website_id"
    assert await store.get_site("d.io") is None
    assert await store.update_site(Site("a.io", "UTC", umami_website_id=website))  # its own id
    assert await store.update_site(Site("a.io"))  # cleared: free for another site
    assert await store.update_site(Site("b.io", umami_website_id=website))
    assert {s.site_id: s.umami_website_id for s in await store.registered_sites()} == {
        "a.io": "",
        "b.io": website,
        "c.io": "",
    }


async def test_every_change_moves_the_version_and_nothing_else_does(store: Store) -> None:
    seen = [await store.registry_version()]

    async def moved() -> None:
        seen.append(await store.registry_version())
        assert seen[-1] > seen[-2]

    await store.add_site(Site("a.io"))
    await moved()
    await store.add_user(User("u@x.io", "viewer", ("a.io",)), "hash")
    await moved()
    await store.add_key(ApiKey("k1", "a.io", "read", "h1", "hs_key_abc"))
    await moved()
    await store.add_link(SharedLink("l1", "a.io", "lh1"))
    await moved()
    await store.revoke_key("k1")
    await moved()
    await store.touch_key("k1", 5)
    await store.add_login(Login("c1", "u@x.io", "csrf", 10**15))
    await store.add_refusals({("a.io", "site_id: x"): 1})
    assert await store.registry_version() == seen[-1]


async def test_users_keep_their_password_hash_unless_given_a_new_one(store: Store) -> None:
    user = User("u@x.io", "viewer", ("a.io", "b.io"), 3)
    await store.add_user(user, "$argon2id$one")
    with pytest.raises(Conflict) as caught:
        await store.add_user(User("u@x.io", "admin"), "other")
    assert caught.value.field == "email"
    assert await store.get_user("u@x.io") == (user, "$argon2id$one")
    promoted = User("u@x.io", "admin", (), 3)
    await store.add_login(Login("c0", "u@x.io", "csrf", 10**15))
    await store.add_login(Login("o0", "other@x.io", "csrf", 10**15))
    assert await store.update_user(promoted)
    assert await store.get_user("u@x.io") == (promoted, "$argon2id$one")
    assert await store.login_by_hash("c0", 0) is not None  # no new password: logins stay
    assert await store.update_user(promoted, "$argon2id$two")
    assert await store.get_user("u@x.io") == (promoted, "$argon2id$two")
    assert await store.login_by_hash("c0", 0) is None  # a new password ends every login
    assert await store.login_by_hash("o0", 0) is not None  # of that user only
    assert await store.users() == [promoted]
    await store.add_login(Login("c1", "u@x.io", "csrf", 10**15))
    assert await store.remove_user("u@x.io")
    assert await store.get_user("u@x.io") is None
    assert await store.login_by_hash("c1", 0) is None  # their logins went with them
    assert not await store.remove_user("u@x.io")


async def test_keys_are_found_by_hash_until_revoked(store: Store) -> None:
    key = ApiKey("k1", "a.io", "write", "h" * 64, "hs_key_abcdef", "server", 5)
    await store.add_key(key)
    await store.add_key(ApiKey("k2", "b.io", "read", "g" * 64, "hs_key_ghijkl", "", 6))
    assert await store.key_by_hash("h" * 64) == key
    assert await store.key_by_hash("x" * 64) is None
    await store.touch_key("k1", 99)
    assert (await store.key_by_hash("h" * 64)) == ApiKey(
        "k1", "a.io", "write", "h" * 64, "hs_key_abcdef", "server", 5, 99
    )
    assert await store.revoke_key("k1")
    assert await store.key_by_hash("h" * 64) is None
    assert [(k.key_id, k.revoked) for k in await store.keys()] == [("k1", True), ("k2", False)]
    assert [k.key_id for k in await store.keys("b.io")] == ["k2"]
    assert not await store.revoke_key("nope")


async def test_logins_expire(store: Store) -> None:
    login = Login("c1", "u@x.io", "csrf-secret", expires_at=1000, created_at=1)
    await store.add_login(login)
    assert await store.login_by_hash("c1", 999) == login
    assert await store.login_by_hash("c1", 1000) is None
    await store.add_login(Login("c2", "u@x.io", "s", expires_at=5000))
    await store.remove_login("c2")
    assert await store.login_by_hash("c2", 0) is None


async def test_shared_links(store: Store) -> None:
    link = SharedLink("l1", "a.io", "t" * 64, "for the board", 4)
    await store.add_link(link)
    await store.add_link(SharedLink("l2", "b.io", "u" * 64))
    assert await store.link_by_hash("t" * 64) == link
    assert await store.links("a.io") == [link]
    assert await store.remove_link("l1")
    assert await store.link_by_hash("t" * 64) is None
    assert not await store.remove_link("l1")


async def test_a_setup_link_works_once_and_a_login_link_until_it_expires(store: Store) -> None:
    await store.put_login_token(LoginToken("s1", "setup"))
    await store.put_login_token(LoginToken("s2", "setup"))  # replaces s1
    assert await store.use_login_token("s1", 0) is None
    assert await store.use_login_token("s2", 0) == LoginToken("s2", "setup")
    assert await store.use_login_token("s2", 0) is None  # used up
    demo = LoginToken("d1", "login", "demo@x.io", expires_at=100)
    await store.put_login_token(demo)
    assert await store.use_login_token("d1", 50) == demo
    assert await store.use_login_token("d1", 60) == demo
    assert await store.use_login_token("d1", 100) is None


async def test_refusals_add_up_per_site_and_the_siteless_ones_only_in_all(store: Store) -> None:
    await store.add_refusals({("a.io", "url: host"): 2, ("", "request 413: body"): 1})
    await store.add_refusals({("a.io", "url: host"): 3, ("b.io", "site_id: x"): 4})
    assert await store.refusals("a.io") == {"url: host": 5}
    assert await store.refusals("b.io") == {"site_id: x": 4}
    assert await store.refusals() == {"url: host": 5, "request 413: body": 1, "site_id: x": 4}


# -- data: removing a site, retention per site, forgetting a user ----------------------------


def traffic(site: str, seed: int, users: list[str]) -> list[ProcessedEvent]:
    """A few hours of pageviews, clicks and custom events on ``site``: anonymous visitors
    and identified users (visitor = ``user_hash``, as the collector makes it), several visits
    each (gaps over 30 minutes), load times, pages, countries, sources."""
    rnd = random.Random(seed)
    events: list[ProcessedEvent] = []
    people = [(f"v{seed}-{i}", "") for i in range(6)] + [(user_hash(site, u), u) for u in users]
    n = 0
    for visitor, user_id in people:
        ts = T + rnd.randrange(0, 40) * MINUTE
        for _ in range(rnd.randint(2, 9)):
            ts += rnd.choice([MINUTE, 5 * MINUTE, 20 * MINUTE, 50 * MINUTE])
            kind = rnd.choice(["pageview", "pageview", "pageview", "click", "custom", "engagement"])
            n += 1
            events.append(
                ProcessedEvent(
                    event_id=f"{site}-{seed}-{n}",
                    site_id=site,
                    type=kind,
                    name=""
                    if kind in ("pageview", "engagement")
                    else rnd.choice(["signup", "outbound"]),
                    timestamp=ts,
                    received_at=ts + 3,
                    visitor_id=visitor,
                    user_id=user_id,
                    path=rnd.choice(["/", "/pricing", "/blog", "/docs"]),
                    country=rnd.choice(["DE", "FR", "US"]),
                    source=rnd.choice(["", "Google", "Twitter"]),
                    browser=rnd.choice(["Firefox", "Chrome"]),
                    load_time_ms=rnd.choice([None, 120, 340, 800]) if kind == "pageview" else None,
                    duration_ms=rnd.choice([None, 900, 4_000]) if kind == "custom" else None,
                    engaged_ms=rnd.randrange(1, 60_000) if kind == "engagement" else None,
                    scroll_depth=rnd.choice([None, 25, 80]) if kind == "engagement" else None,
                )
            )
    events.sort(key=lambda e: (e.timestamp, e.event_id))
    return events


async def put(store: Store, events: list[ProcessedEvent], stream: str = "s") -> None:
    """Write through the sessionizer, as the processor does, in three batches."""
    sessions = Sessionizer()
    third = max(1, len(events) // 3)
    offset = 0
    for start in range(0, len(events), third):
        chunk = events[start : start + third]
        for e in chunk:
            sessions.assign(e, e.visitor_id)
        offset += len(chunk)
        await store.write(WriteBatch(stream, {0: offset}, chunk, sessions.drain_touched()))


ENGAGED = ("time_on_page", "scroll_depth", "avg_duration")


def queries(site: str) -> list[StatsQuery]:
    whole = Range(T - 2 * HOUR, T + DAY)  # whole half hours: rollups on PostgreSQL
    raw = Range(T + 7 * MINUTE, T + 9 * HOUR + 11 * MINUTE)  # ragged: raw scans
    metrics = ("visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration")
    out = []
    for rng in (whole, raw):
        out.append(StatsQuery(site, rng, metrics=(*metrics, "load_time_p50", "load_time_p95")))
        for prop in ("page", "country", "source", "entry_page", "exit_page", "event_name"):
            out.append(StatsQuery(site, rng, metrics=metrics, property=prop))
        out.append(StatsQuery(site, rng, metrics=metrics, interval="hour"))
        for prop in ("", "page", "event_name"):
            out.append(StatsQuery(site, rng, metrics=(*metrics, *ENGAGED), property=prop))
    return out


async def answers(store: Store, site: str) -> list[object]:
    found: list[object] = []
    for query in queries(site):
        if query.property:
            found.append(
                sorted((r.value, sorted(r.results.items())) for r in await store.breakdown(query))
            )
        elif query.interval == "hour":
            found.append(
                [(p.bucket, sorted(p.results.items())) for p in await store.timeseries(query)]
            )
        else:
            found.append(sorted((await store.aggregate(query)).items()))
    return found


async def test_forgetting_a_user_leaves_stats_as_if_their_events_never_arrived(
    store_adapter: StoreAdapter, tmp_path: Path
) -> None:
    events = traffic("f.io", 1, ["alice", "bob"]) + traffic("g.io", 2, ["alice"])
    kept = [e for e in events if not (e.site_id == "f.io" and e.user_id == "alice")]
    assert len(kept) < len(events)
    (tmp_path / "full").mkdir()
    (tmp_path / "expected").mkdir()
    full = store_adapter.open(tmp_path / "full")
    expected = store_adapter.open(tmp_path / "expected")
    await full.start()
    await expected.start()
    try:
        await put(full, [copy.copy(e) for e in events])
        await put(expected, [copy.copy(e) for e in kept])
        before = await full.data_version("f.io")
        removed = await full.forget_user("f.io", "alice", T + DAY)
        assert removed == len(events) - len(kept)
        assert await full.data_version("f.io") > before
        assert await answers(full, "f.io") == await answers(expected, "f.io")
        answered = getattr(full, "answered", None)  # PostgreSQL: the rollups were read
        assert answered is None or answered["rollup"] > 0
        assert await answers(full, "g.io") == await answers(expected, "g.io")  # alice stays there
        assert await full.count_events("f.io") == await expected.count_events("f.io")
        assert await full.forget_user("f.io", "alice", T + DAY) == 0
        assert await full.forgotten() == {("f.io", user_hash("f.io", "alice")): T + DAY}
        # "" is what every event without a user_id holds: forgetting it deleted them all
        anonymous = await full.count_events("f.io")
        for blank in ("", "  "):
            with pytest.raises(QueryError) as refused:
                await full.forget_user("f.io", blank, T + DAY)
            assert refused.value.field == "user_id"
        assert await full.count_events("f.io") == anonymous > 0
    finally:
        await full.close()
        await expected.close()


async def test_retention_of_one_site_leaves_the_others(
    store_adapter: StoreAdapter, tmp_path: Path
) -> None:
    events = traffic("f.io", 3, ["carol"]) + traffic("g.io", 4, [])
    cutoff = T + 3 * HOUR + 7 * MINUTE
    (tmp_path / "full").mkdir()
    (tmp_path / "expected").mkdir()
    full = store_adapter.open(tmp_path / "full")
    expected = store_adapter.open(tmp_path / "expected")
    await full.start()
    await expected.start()
    try:
        await put(full, [copy.copy(e) for e in events])
        await put(expected, [copy.copy(e) for e in events])
        old = sum(1 for e in events if e.site_id == "f.io" and e.timestamp < cutoff)
        assert old > 0
        assert await full.delete_site_before("f.io", cutoff) == old
        assert (
            await full.count_events("f.io") == sum(1 for e in events if e.site_id == "f.io") - old
        )
        assert await answers(full, "g.io") == await answers(expected, "g.io")
        after = Range(T + 4 * HOUR, T + DAY)  # whole half hours after the cutoff's
        query = StatsQuery("f.io", after, metrics=("pageviews", "events"))
        assert await full.aggregate(query) == await expected.aggregate(query)
    finally:
        await full.close()
        await expected.close()


async def test_removing_a_site_deletes_its_data_keys_links_and_place_in_user_lists(
    store: Store,
) -> None:
    for site in ("f.io", "g.io"):
        await store.add_site(Site(site))
    await put(store, traffic("f.io", 5, ["dan"]) + traffic("g.io", 6, []))
    await store.add_key(ApiKey("k1", "f.io", "read", "h1", "p"))
    await store.add_key(ApiKey("k2", "g.io", "read", "h2", "p"))
    await store.add_link(SharedLink("l1", "f.io", "lh"))
    await store.add_user(User("v@x.io", "viewer", ("f.io", "g.io")), "hash")
    await store.add_refusals({("f.io", "url: host"): 1})
    g_before = await answers(store, "g.io")
    version = await store.data_version("f.io")
    assert await store.remove_site("f.io")
    assert await store.get_site("f.io") is None
    assert await store.count_events("f.io") == 0
    assert await store.data_version("f.io") > version  # cached answers went stale
    assert [k.key_id for k in await store.keys()] == ["k2"]
    assert await store.links("f.io") == []
    assert (await store.get_user("v@x.io")) == (User("v@x.io", "viewer", ("g.io",)), "hash")
    assert await store.refusals("f.io") == {}
    assert await answers(store, "g.io") == g_before
    empty = await store.aggregate(StatsQuery("f.io", Range(0, 2**50), metrics=("events",)))
    assert empty == {"events": 0.0}
    assert not await store.remove_site("f.io")


async def test_an_upgraded_duckdb_file_registers_the_sites_it_holds(tmp_path: Path) -> None:
    """A database made before the registry: its sites are registered by the migration."""
    path = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(path))
    from importlib import resources

    first = resources.files("hitstream.stores.sql.duckdb").joinpath("0001_init.sql").read_text()
    conn.execute(first)
    conn.execute("CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at BIGINT)")
    conn.execute("INSERT INTO schema_migrations VALUES ('0001_init', 0)")
    conn.execute("INSERT INTO sites VALUES ('old.example', 12)")
    conn.close()
    store = DuckDBStore(path)
    await store.start()
    try:
        assert await store.registered_sites() == [Site("old.example")]
        assert await store.data_version("old.example") == 12
    finally:
        await store.close()
