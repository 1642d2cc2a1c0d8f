"""``serve`` as one unit of processes: the fan-out relay from the processor process to the
web process over a Unix socket, and one ``/metrics`` page for both."""

from __future__ import annotations

import asyncio
import platform
import sys
import tracemalloc
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from hitstream.errors import FanoutUnavailable
from hitstream.fanout.memory import MemoryFanout
from hitstream.fanout.relay import FanoutRelay, RelayFanout
from hitstream.metrics import Metrics, merge_exposition
from hitstream.settings import Settings
from hitstream.unit import processor_in_child


async def test_what_the_child_publishes_reaches_the_parents_subscribers(tmp_path: Path) -> None:
    parent = MemoryFanout()
    relay = FanoutRelay(parent, tmp_path / "fanout.sock")
    await relay.start()
    subscription = await parent.subscribe("site:a.io")
    other = await parent.subscribe("site:b.io")
    child = RelayFanout(tmp_path / "fanout.sock")
    try:
        for n in range(3):
            await child.publish("site:a.io", f"update {n}".encode())
        got = [await asyncio.wait_for(subscription.get(), 10) for _ in range(3)]
        assert got == [b"update 0", b"update 1", b"update 2"]
        assert len(other) == 0  # another channel's subscriber got nothing
        assert (tmp_path / "fanout.sock").stat().st_mode & 0o777 == 0o600
    finally:
        await child.close()
        await relay.close()


async def test_a_publish_without_a_listener_fails_then_recovers(tmp_path: Path) -> None:
    child = RelayFanout(tmp_path / "fanout.sock")
    with pytest.raises(FanoutUnavailable):
        await child.publish("site:a.io", b"lost")  # the parent is not listening (yet)
    parent = MemoryFanout()
    relay = FanoutRelay(parent, tmp_path / "fanout.sock")
    await relay.start()
    subscription = await parent.subscribe("site:a.io")
    try:
        await child.publish("site:a.io", b"later")  # connects again by itself
        assert await asyncio.wait_for(subscription.get(), 10) == b"later"
    finally:
        await child.close()
        await relay.close()


def test_one_metrics_page_sums_both_processes() -> None:
    web, processor = Metrics(), Metrics()
    web.events_accepted.inc(7)
    web.requests_rejected.labels("400", "body").inc(2)
    processor.events_processed.inc(5)
    processor.events_dropped.labels("bot").inc(3)
    processor.requests_rejected.labels("400", "body").inc(1)
    processor.store_write_seconds.observe(0.02)
    processor.store_write_seconds.observe(0.5)
    page = merge_exposition(
        generate_latest(web.registry).decode(), generate_latest(processor.registry).decode()
    )
    lines = page.splitlines()
    values = {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if line[0] != "#")}
    assert values["hitstream_events_accepted_total"] == 7
    assert values["hitstream_events_processed_total"] == 5
    assert values['hitstream_events_dropped_total{reason="bot"}'] == 3
    assert values['hitstream_requests_rejected_total{reason="body",status="400"}'] == 3
    assert values["hitstream_store_write_seconds_count"] == 2
    assert values["hitstream_store_write_seconds_sum"] == pytest.approx(0.52)
    assert values['hitstream_store_write_seconds_bucket{le="0.025"}'] == 1
    types = [line for line in lines if line.startswith("# TYPE hitstream_events_processed_total")]
    assert len(types) == 1  # each family once
    assert merge_exposition(page, "") == page  # a child not answering adds nothing


def test_only_the_embedded_default_runs_the_processor_in_a_child(tmp_path: Path) -> None:
    assert processor_in_child(Settings(data_dir=tmp_path))
    assert not processor_in_child(Settings(data_dir=tmp_path, processor_process=False))
    assert not processor_in_child(Settings(data_dir=tmp_path, store_url="memory://"))
    assert not processor_in_child(Settings(data_dir=tmp_path, log_url="memory://"))
    assert not processor_in_child(
        Settings(data_dir=tmp_path, fanout_url="redis://127.0.0.1:6379/0")
    )


async def test_the_web_process_store_reconnects_after_the_processor_process_restarts(
    tmp_path: Path,
) -> None:
    """``serve``'s parent reads the store through the child's socket: a killed and restarted
    child must not leave the parent's store dead, nor its answers out of step."""
    from hitstream.domain.sites import Site
    from hitstream.errors import StoreUnavailable
    from hitstream.stores.memory import MemoryStore
    from hitstream.stores.socket import SocketStore, StoreServer, _write

    path = tmp_path / "control.sock"
    held = MemoryStore()
    await held.add_site(Site("a.io", created_at=1))
    server = StoreServer(held, path)
    await server.start()
    store = SocketStore(path, timeout=10)
    await store.start()
    assert [s.site_id for s in await store.registered_sites()] == ["a.io"]
    assert store._writer is not None  # an interrupted call's answer is still on its way:
    _write(store._writer, {"id": 0, "op": "registered_sites", "args": []})
    assert await store.data_version("a.io") == await held.data_version("a.io")  # not its answer
    await server.close()  # the child is killed ...
    with pytest.raises(StoreUnavailable):
        await store.registered_sites()
    server = StoreServer(held, path)  # ... and comes back
    await server.start()
    try:
        assert [s.site_id for s in await store.registered_sites()] == ["a.io"]
    finally:
        await store.close()
        await server.close()


async def test_a_site_registered_a_moment_ago_elsewhere_is_not_dropped() -> None:
    """The processor process's site book refreshes about once a second; an event of a site
    the web process registered just now makes it ask the registry before dropping."""
    from hitstream.services.pipeline import UNREGISTERED, drop_unregistered_with
    from tests.unit.test_processor import accepted

    class LaggingBook:
        def __init__(self) -> None:
            self.known: dict[str, object] = {}
            self.registry = {"a.io": object()}  # what the registry says

        async def sites(self) -> dict[str, object]:
            return self.known

        async def forgotten_users(self) -> dict[tuple[str, str], int]:
            return {}

        async def refresh(self, *, force: bool = False) -> None:
            self.known = dict(self.registry)

    class Working:
        def __init__(self, site: str) -> None:
            self.accepted = accepted(1, site_id=site)

    step = drop_unregistered_with(LaggingBook())
    batch = [Working("a.io"), Working("gone.io")]
    assert await step(batch) == [None, UNREGISTERED]  # type: ignore[arg-type]


def test_pythons_heap_is_shown_per_process_only_while_traced() -> None:
    """``hitstream_python_heap_bytes``: absent by default (tracing costs CPU); with tracing
    on, one series per process of the unit, each what that process's Python holds."""
    web, processor = Metrics(process="collector,web"), Metrics(process="processor")
    assert "hitstream_python_heap_bytes" not in generate_latest(web.registry).decode()
    tracemalloc.start()
    try:
        held = [bytearray(1_000_000) for _ in range(5)]  # 5 MB that Python allocates
        page = merge_exposition(
            generate_latest(web.registry).decode(), generate_latest(processor.registry).decode()
        )
        traced = tracemalloc.get_traced_memory()[1]  # the peak: a collection in between
        # may free memory, so the current figure can be below what a reading saw
    finally:
        tracemalloc.stop()
    del held
    samples = (line.rpartition(" ") for line in page.splitlines() if line[0] != "#")
    values = {k: float(v) for k, _, v in samples}
    web_heap = values['hitstream_python_heap_bytes{process="collector,web"}']
    processor_heap = values['hitstream_python_heap_bytes{process="processor"}']
    assert 5_000_000 <= web_heap <= traced and 5_000_000 <= processor_heap <= traced
    if sys.platform == "linux" and platform.libc_ver()[0] == "glibc":
        # the 1 MB blocks above are malloc's (past Python's small objects): mmapped or in use
        malloc = sum(
            values[f'hitstream_malloc_bytes{{process="processor",state="{state}"}}']
            for state in ("in_use", "mmapped")
        )
        assert malloc >= 5_000_000
        assert values['hitstream_malloc_bytes{process="processor",state="free"}'] >= 0
    page = generate_latest(web.registry).decode()
    assert "hitstream_python_heap_bytes" not in page and "hitstream_malloc_bytes" not in page
