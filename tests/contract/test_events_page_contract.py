"""``Store.events_page``, the export's read, on every store: pages in (timestamp, event_id)
order after a key, one site and one range only, every column and props as text."""

from __future__ import annotations

import random
from dataclasses import asdict, replace

from hitstream.domain import rollups
from hitstream.domain.events import ProcessedEvent, Props
from hitstream.stores.base import Store, WriteBatch
from tests.contract.test_store_contract import DAY, HOUR, T, event


def expected(
    events: list[ProcessedEvent], site: str, start: int, end: int
) -> list[dict[str, object]]:
    """What a full export holds, computed here: the events as written, props as text."""

    def text(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else repr(value)

    chosen = [e for e in events if e.site_id == site and start <= e.timestamp < end]
    chosen.sort(key=lambda e: (e.timestamp, e.event_id))
    return [asdict(replace(e, props={k: text(v) for k, v in e.props.items()})) for e in chosen]


PROPS: Props = {"plan": "pro", "seats": 3, "trial": True, "x": 0.5}


async def read_all(
    store: Store, site: str, start: int, end: int, size: int
) -> list[ProcessedEvent]:
    found: list[ProcessedEvent] = []
    after: tuple[int, str] | None = None
    while True:
        page = await store.events_page(site, start, end, after, size)
        assert len(page) <= size
        if not page:
            return found
        found += page
        after = (page[-1].timestamp, page[-1].event_id)


async def test_pages_cover_the_range_in_order_once(store: Store) -> None:
    rng = random.Random(7)
    events = [
        event(
            f"e{n:03d}{rng.choice(['', 'é', 'Z', 'a'])}",
            T + rng.randrange(-HOUR, DAY) // 1000 * 1000,  # whole seconds: many ties
            f"v{rng.randrange(4)}",
            f"s{rng.randrange(6)}",
            rng.choice(["/", "/a", "/Ä"]),
            site=rng.choice(["shop", "shop", "other"]),
            load=rng.choice([None, 120]),
            props=rng.choice([{}, dict(PROPS)]),
            title=rng.choice(["", "a\nb", "=1+1"]),
        )
        for n in range(120)
    ]
    # a few events share a timestamp exactly, so the event id breaks the tie
    events += [event(f"tie{c}", T, "v9", "s9", site="shop") for c in "cab"]
    await store.write(WriteBatch("events", {0: 1}, events))
    for start, end in ((T - DAY, T + 2 * DAY), (T, T + 6 * HOUR), (T + 1, T + 2)):
        want = expected(events, "shop", start, end)
        for size in (1, 7, 1000):
            got = await read_all(store, "shop", start, end, size)
            assert [asdict(e) for e in got] == want
    assert await store.events_page("nobody", T - DAY, T + DAY, None, 10) == []


async def test_latest_events_are_the_newest_of_the_range_oldest_first(store: Store) -> None:
    """``Store.latest_events``, what a live feed shows on its first viewer: the last
    ``limit`` of the range in (timestamp, event_id) order, one site only."""
    rng = random.Random(11)
    events = [
        event(
            f"e{n:03d}{rng.choice(['', 'é', 'Z'])}",
            T + rng.randrange(0, 2 * HOUR) // 1000 * 1000,
            f"v{rng.randrange(4)}",
            f"s{rng.randrange(6)}",
            site=rng.choice(["shop", "shop", "other"]),
            props=rng.choice([{}, dict(PROPS)]),
        )
        for n in range(60)
    ]
    events += [event(f"tie{c}", T + HOUR, "v9", "s9", site="shop") for c in "cab"]
    await store.write(WriteBatch("events", {0: 1}, events))
    for start, end in ((T - DAY, T + DAY), (T, T + HOUR + 1), (T + 1, T + 2)):
        want = expected(events, "shop", start, end)
        for limit in (0, 1, 5, 1000):
            got = await store.latest_events("shop", start, end, limit)
            assert [asdict(e) for e in got] == want[len(want) - min(limit, len(want)) :]
    assert await store.latest_events("nobody", T - DAY, T + DAY, 10) == []


async def test_prop_keys_are_the_first_keys_a_site_sent(store: Store) -> None:
    """What the dashboard's props tab offers: one site's keys, the first ones it sent (at most
    ``PROP_KEYS_PER_SITE``), none of another site's, nothing for a site without props."""
    cap = rollups.PROP_KEYS_PER_SITE
    sent = [f"k{n:02d}" for n in range(cap + 8)]
    events = [
        event(f"p{n:02d}", T + n * 1000, "v1", "s1", props={key: n, "plan": "pro"})
        for n, key in enumerate(sent)
    ]
    events.append(event("q1", T, "v2", "s2", site="other", props={"theirs": 1}))
    events.append(event("q2", T, "v3", "s3", site="plain"))
    await store.write(WriteBatch("events", {0: len(events)}, events, []))
    keys = await store.prop_keys("shop")
    assert len(keys) == len(set(keys)) == cap
    assert set(keys) == {*sent[: cap - 1], "plan"}  # in order of appearance: k00, plan, k01 ...
    assert await store.prop_keys("other") == ["theirs"]
    assert await store.prop_keys("plain") == []
    assert await store.prop_keys("nobody") == []
