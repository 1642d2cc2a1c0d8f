"""/readyz: 503 naming a part the roles need; 200 "degraded" when only an optional part is down."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hitstream.bootstrap import build
from hitstream.errors import FanoutUnavailable
from hitstream.log.memory import MemoryLog
from hitstream.services.accounts import Accounts
from hitstream.settings import Settings
from hitstream.web.app import create_app
from tests.access import admin_key, bearer, register


async def readyz(
    tmp_path: Path, roles: frozenset[str], scope: str = "", **broken: bool
) -> httpx.Response:
    """``scope``: ask with a new key of that scope (``admin``: for every site, ``read``: for
    one), ``wrong``: with a key nobody made; none: anonymously."""
    runtime = build(Settings(data_dir=tmp_path, log_url="memory://", store_url="memory://"), roles)
    headers = {}
    if scope == "wrong":
        headers = bearer("hs_key_" + "x" * 43)
    elif scope:
        await register(runtime.store, "a.io")
        site = "*" if scope == "admin" else "a.io"
        token, _ = await Accounts(runtime.store).create_key(site, scope, "probe")
        headers = bearer(token)
    if broken.get("log"):
        assert isinstance(runtime.log, MemoryLog)
        runtime.log.available = False
    if broken.get("fanout"):

        async def down() -> None:
            raise FanoutUnavailable("redis: connection refused")

        runtime.fanout.check = down  # type: ignore[method-assign]
    app = create_app(runtime.services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        return await client.get("/readyz", headers=headers)


async def test_everything_up_is_ready(tmp_path: Path) -> None:
    answer = await readyz(tmp_path, frozenset({"collector", "processor", "web"}))
    assert (answer.status_code, answer.json()["status"]) == (200, "ready")
    checks = answer.json()["checks"]
    assert {name for name, c in checks.items() if not c["required"]} == {"fanout", "cache"}
    # the collector writes salts in the data folder: the disk is checked
    assert checks["disk"] == {"ok": True, "adapter": "disk", "required": True}


async def test_a_needed_part_down_is_unavailable_and_named(tmp_path: Path) -> None:
    answer = await readyz(tmp_path, frozenset({"collector"}), log=True)
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["log"]["ok"] is False
    assert body["checks"]["log"]["error"] == "unavailable"


@pytest.mark.parametrize(
    ("scope", "detailed"), [("admin", True), ("read", False), ("wrong", False), ("", False)]
)
async def test_only_an_admin_reads_what_a_failing_part_said(
    tmp_path: Path, scope: str, detailed: bool
) -> None:
    """/readyz is open: an adapter's own error (a database's host and user, a folder's path)
    is an admin's to read."""
    roles = frozenset({"collector", "processor", "web"})
    answer = await readyz(tmp_path, roles, scope=scope, log=True)
    assert answer.status_code == 503
    error = answer.json()["checks"]["log"]["error"]
    assert ("switched off" in error) is detailed, error
    assert detailed or error == "unavailable"


async def test_an_optional_part_down_is_degraded_but_ready(tmp_path: Path) -> None:
    answer = await readyz(tmp_path, frozenset({"processor", "web"}), fanout=True)
    assert (answer.status_code, answer.json()["status"]) == (200, "degraded")
    assert answer.json()["checks"]["fanout"]["ok"] is False


async def test_a_role_is_not_judged_by_parts_it_does_not_use(tmp_path: Path) -> None:
    answer = await readyz(tmp_path, frozenset({"web"}), log=True)
    assert (answer.status_code, answer.json()["status"]) == (200, "ready")
    assert "log" not in answer.json()["checks"]


async def test_a_503_names_the_part_and_keeps_its_error_for_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Any route answering 503 because the store is down: the body says which part, the
    store's own text stays in the server's log."""
    runtime = build(
        Settings(data_dir=tmp_path, log_url="memory://", store_url="memory://"),
        frozenset({"web"}),
    )
    await register(runtime.store, "a.io")
    headers = bearer(await admin_key(runtime.store))
    await runtime.store.close()  # the memory store refuses every call until started
    app = create_app(runtime.services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers
    ) as client:
        answer = await client.get(
            "/api/v1/stats/aggregate", params={"site_id": "a.io", "period": "day"}
        )
    assert answer.status_code == 503
    assert answer.json() == {
        "error": {"field": "service", "reason": "the store is unavailable; retry later"}
    }
    assert answer.headers["retry-after"] == "5"
    assert "switched off or closed" in caplog.text


async def test_a_start_waiting_for_its_log_stops_when_asked(tmp_path: Path) -> None:
    """A role whose log is down waits for it at start-up, and a SIGTERM meanwhile (the
    server's ``should_exit``) ends the wait: it kept retrying, deaf to SIGTERM and Ctrl-C."""
    import asyncio
    import time

    from hitstream.errors import LogUnavailable

    runtime = build(
        Settings(data_dir=tmp_path, log_url="memory://", store_url="memory://"),
        frozenset({"collector"}),
    )
    tries: list[float] = []
    third = asyncio.Event()

    async def refused() -> None:
        tries.append(time.monotonic())
        if len(tries) == 3:
            third.set()
        raise LogUnavailable("redis: connection refused")

    runtime.log.start = refused  # type: ignore[method-assign]
    asked = asyncio.Event()
    runtime.stopping = asked.is_set
    started = asyncio.create_task(runtime.start())
    await asyncio.wait_for(third.wait(), 10)  # it waits, retrying
    assert not started.done()
    asked.set()
    await asyncio.wait_for(started, 1.0)  # it stops waiting within a tick
    assert runtime.collector is not None and runtime._started == []  # nothing was started
    await runtime.stop()


async def test_a_signal_ends_a_connection_attempt_in_progress(tmp_path: Path) -> None:
    """A PostgreSQL pool's attempt lasts 10 s: SIGTERM or Ctrl-C meanwhile waited for it
    (7.8 s here) although the README says the waiting process stops at once."""
    import asyncio

    runtime = build(
        Settings(data_dir=tmp_path, log_url="memory://", store_url="memory://"),
        frozenset({"collector"}),
    )
    connecting = asyncio.Event()
    cancelled: list[bool] = []

    async def slow() -> None:
        connecting.set()
        try:
            await asyncio.sleep(30)  # the attempt that would take its time
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    runtime.log.start = slow  # type: ignore[method-assign]
    asked = asyncio.Event()
    runtime.stopping = asked.is_set
    started = asyncio.create_task(runtime.start())
    await asyncio.wait_for(connecting.wait(), 10)
    asked.set()
    await asyncio.wait_for(started, 1.0)  # within a tick, not at the attempt's end
    assert cancelled == [True] and runtime._started == []
    await runtime.stop()


async def test_a_setting_the_processor_finds_wrong_stops_the_process(tmp_path: Path) -> None:
    """A Kafka consumer's settings are checked at its first poll: the loop logged the same
    error and backed off for good, processing nothing. It is a setting: the process stops
    (the CLI says it in one line, exit code 2)."""
    import asyncio

    from hitstream.errors import ConfigError

    runtime = build(
        Settings(data_dir=tmp_path, log_url="memory://", store_url="memory://"),
        frozenset({"processor"}),
    )
    wrong = ConfigError("HITSTREAM_KAFKA_EXTRA / HITSTREAM_KAFKA_SASL_*: Kafka refused")
    rounds: list[int] = []

    async def poll(*args: object, **kwargs: object) -> int:
        rounds.append(1)
        raise wrong

    assert runtime.processor is not None
    runtime.processor.process_once = poll  # type: ignore[method-assign]
    stopped = asyncio.Event()
    runtime.on_fatal = stopped.set
    await runtime.start()
    await asyncio.wait_for(stopped.wait(), 5)
    assert runtime.fatal is wrong and rounds == [1]  # once: not retried
    await runtime.stop()
