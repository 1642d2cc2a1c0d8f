"""``hitstream sites | users | keys | forget``: on a DuckDB file opened directly, and through
the control socket of a process that holds the file (as while ``serve`` runs)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hitstream.cli import app
from hitstream.stores.duckdb import DuckDBStore
from hitstream.stores.socket import StoreServer

MIGRATIONS = Path(__file__).resolve().parents[2] / "src" / "hitstream" / "stores" / "sql" / "duckdb"

runner = CliRunner()


def run(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data)])
    return result.exit_code, result.output


class HeldStore:
    """A DuckDB store held by another event loop (thread), lent on ``control.sock``."""

    def __init__(self, data: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = DuckDBStore(data / "hitstream.duckdb")
        self.server = StoreServer(self.store, data.resolve() / "control.sock")
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> DuckDBStore:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self.store

    async def _start(self) -> None:
        await self.store.start()
        await self.server.start()

    async def _stop(self) -> None:
        await self.server.close()
        await self.store.close()

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(params=["direct", "socket"])
def data(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    folder.mkdir()
    if request.param == "direct":
        yield folder
    else:
        with HeldStore(folder):
            assert (folder / "control.sock").exists()
            yield folder


def test_sites(data: Path) -> None:
    code, out = run(data, "sites", "add", "shop.example", "--timezone", "Europe/Berlin", "--public")
    assert code == 0, out
    assert 'data-site="shop.example"' in out and "data-api" not in out
    assert run(data, "sites", "add", "shop.example")[0] == 1  # registered already
    scaled = runner.invoke(
        app,
        ["sites", "add", "collected.example", "--data-dir", str(data)],
        env={"HITSTREAM_COLLECTOR_URL": "https://collect.example.com"},
    )  # scale-out: the snippet sends to the collectors
    assert 'data-api="https://collect.example.com/api/v1/events"' in scaled.output
    assert run(data, "sites", "remove", "collected.example", "--yes")[0] == 0
    code, out = run(data, "sites", "add", "bad site")
    assert code == 1 and "site_id" in out
    code, out = run(data, "sites", "list")
    assert out.splitlines() == [
        "shop.example\ttz=Europe/Berlin\thosts=shop.example,*.shop.example\t"
        "retention=forever\tpublic"
    ]
    code, out = run(
        data, "sites", "update", "shop.example", "--retention-days", "30", "--private",
        "--allowed-hosts", "shop.example,cdn.example",
    )  # fmt: skip
    assert code == 0 and "hosts=shop.example,cdn.example\tretention=30\tprivate" in out
    assert run(data, "sites", "update", "nope.example", "--public")[0] == 1
    assert run(data, "sites", "remove", "shop.example")[0] == 1  # not a terminal: --yes needed
    assert run(data, "sites", "remove", "shop.example", "--yes")[0] == 0
    assert run(data, "sites", "remove", "shop.example", "--yes")[0] == 1
    assert run(data, "sites", "list")[1] == ""


def test_sites_umami_website_id(data: Path) -> None:
    website = "4F9A2C1E-8B7D-4E6F-9A0B-1C2D3E4F5A6B"
    code, out = run(data, "sites", "add", "a.io", "--umami-website-id", website)
    assert code == 0 and f"umami={website.lower()}" in out
    assert run(data, "sites", "add", "b.io")[0] == 0
    code, out = run(data, "sites", "update", "b.io", "--umami-website-id", website)
    assert code == 1 and "umami_website_id: is the Umami website id of another site" in out
    code, out = run(data, "sites", "update", "b.io", "--umami-website-id", "nope")
    assert code == 1 and "umami_website_id: must be a UUID" in out
    assert run(data, "sites", "update", "a.io", "--umami-website-id", "")[0] == 0  # cleared
    code, out = run(data, "sites", "update", "b.io", "--umami-website-id", website)
    assert code == 0 and f"umami={website.lower()}" in out
    assert [line.endswith(f"umami={website.lower()}") for line in run(data, "sites", "list")[1]
            .splitlines()] == [False, True]  # fmt: skip


def test_users_keys_and_forget(data: Path, tmp_path: Path) -> None:
    assert run(data, "sites", "add", "a.io")[0] == 0
    code, out = run(data, "sites", "add", "A.io")  # the same domain in other case
    assert code == 1 and "site_id: a.io is registered already" in out
    password = tmp_path / "pw"
    password.write_text("correct horse battery\n")
    code, out = run(
        data, "users", "add", "V@X.io", "--role", "viewer", "--sites", "a.io",
        "--password-file", str(password),
    )  # fmt: skip
    assert code == 0 and "added v@x.io (viewer: a.io)" in out
    assert (
        run(data, "users", "add", "v@x.io", "--role", "admin", "--password-file", str(password))[0]
        == 1
    )
    assert run(data, "users", "list")[1].splitlines() == ["v@x.io\tviewer\ta.io"]
    assert run(data, "users", "remove", "v@x.io")[0] == 0
    assert run(data, "users", "remove", "v@x.io")[0] == 1
    code, out = run(data, "keys", "create", "--site", "a.io", "--scope", "read", "--name", "ci")
    assert code == 0
    key = out.splitlines()[0]
    assert key.startswith("hs_key_")
    assert run(data, "keys", "create", "--site", "nope.io", "--scope", "read")[0] == 1
    assert run(data, "keys", "create", "--site", "*", "--scope", "read")[0] == 1  # admin only
    listed = run(data, "keys", "list")[1].splitlines()
    assert len(listed) == 1 and key not in listed[0] and key[:13] in listed[0]
    key_id = listed[0].split("\t")[0]
    assert run(data, "keys", "revoke", key_id)[0] == 0
    assert "revoked" in run(data, "keys", "list", "--site", "a.io")[1]
    assert run(data, "keys", "revoke", "key_nope")[0] == 1
    code, out = run(data, "forget", "--site", "a.io", "--user-id", "42")
    assert code == 0 and "0 event(s) deleted" in out
    assert run(data, "forget", "--site", "nope.io", "--user-id", "42")[0] == 1
    for blank in ("", " "):  # every event without a user_id has "": it deleted them all
        code, out = run(data, "forget", "--site", "a.io", "--user-id", blank)
        assert code == 1 and "user-id: must name a user" in out, out


async def test_forgetting_a_user_leaves_nothing_of_them_in_duckdbs_write_ahead_log(
    tmp_path: Path,
) -> None:
    """Deleted rows stayed in ``hitstream.duckdb.wal`` until DuckDB's next checkpoint (when
    the log reaches 16 MB): the store checkpoints after a forget that deleted something."""
    from hitstream.domain.events import ProcessedEvent
    from hitstream.stores.base import WriteBatch

    store = DuckDBStore(tmp_path / "hitstream.duckdb")
    await store.start()
    try:
        secret = "user-8f3a1c-secret"
        events = [
            ProcessedEvent(
                event_id=f"e{n}", site_id="a.io", type="pageview", name="", timestamp=1_790_000_000_000 + n,
                received_at=1_790_000_000_000, visitor_id="v", session_id="s", path="/",
                user_id=secret,
            )
            for n in range(3)
        ]  # fmt: skip
        await store.write(WriteBatch("t", {0: 3}, events, []))
        wal = tmp_path / "hitstream.duckdb.wal"
        assert wal.exists() and secret.encode() in wal.read_bytes()  # what the test is about
        assert await store.forget_user("a.io", secret, 1_790_000_100_000) == 3
        assert not wal.exists() or secret.encode() not in wal.read_bytes()
    finally:
        await store.close()


def test_migrate_says_what_it_applied(tmp_path: Path) -> None:
    """On an empty store it said "up to date" after creating the whole schema."""
    first = runner.invoke(app, ["migrate", "--data-dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("store schema migrated (duckdb): applied 0001_init, ")
    names = sorted(p.stem for p in MIGRATIONS.glob("*.sql"))
    assert first.output.strip().endswith(", ".join(names))
    again = runner.invoke(app, ["migrate", "--data-dir", str(tmp_path)])
    assert again.output.strip() == "store schema is up to date (duckdb)"


def test_a_command_run_where_no_data_folder_is_says_so(tmp_path: Path) -> None:
    """Run from another folder, ``hitstream users add`` made an account in a new, empty
    store nobody serves, and said nothing."""
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["sites", "list", "--data-dir", str(missing)])
    assert result.exit_code == 0
    assert f"note: no data folder at {missing.resolve()}" in result.output
    again = runner.invoke(app, ["sites", "list", "--data-dir", str(missing)])
    assert "note:" not in again.output  # it is there now
