"""The ``hitstream`` command: serve · collector · processor · web · migrate · generate · replay
(and, from ``hitstream.admin``, sites · users · keys · forget).

Heavy imports stay inside the commands, so ``hitstream --help`` is quick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from hitstream import admin

app = typer.Typer(
    help="hitstream: real-time, privacy-first website analytics.",
    no_args_is_help=True,
    add_completion=False,
)

Host = Annotated[str | None, typer.Option(help="Address to bind [env HITSTREAM_HOST]")]
Port = Annotated[int | None, typer.Option(help="Port to bind [env HITSTREAM_PORT]")]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data folder [env HITSTREAM_DATA_DIR]")
]


def _settings(host: str | None = None, port: int | None = None, data_dir: Path | None = None):  # type: ignore[no-untyped-def]
    from hitstream.settings import Settings

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**overrides)  # type: ignore[arg-type]


def _logging(level: str) -> None:
    from hitstream.web import redact

    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redact.install()  # no client address from the HTTP server's lines


def _server_class() -> type:
    """uvicorn's Server, except that a SIGTERM/SIGINT that shut down cleanly exits 0.

    uvicorn re-raises the signal after its graceful shutdown, so the process would die "by
    SIGTERM"; after a complete drain we want supervisors to see a clean exit instead.
    """
    import contextlib
    from collections.abc import Iterator

    import uvicorn

    class CleanExitServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return CleanExitServer


def _run(
    roles: frozenset[str],
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    *,
    demo: bool = False,
) -> None:
    from hitstream.unit import Lifecycle, ProcessorChild, Unit, processor_in_child

    settings = _settings(host, port, data_dir)
    if demo:
        settings.demo = True
    _logging(settings.log_level)
    shown_roles = roles
    child = None
    if "processor" in roles and len(roles) > 1 and processor_in_child(settings):
        child = ProcessorChild(settings)  # the processor gets a process (a core) of its own
        child.spawn()  # now: it starts up while this process imports and builds
        settings, roles = child.parent_settings(), roles - {"processor"}
    from hitstream.bootstrap import build
    from hitstream.web.app import create_app
    from hitstream.web.server import server_config

    runtime = build(settings, roles, alerting_here=True if child is not None else None)
    runtime.announce = typer.echo  # first-run and demo links
    lifecycle: Lifecycle = runtime
    if child is not None:
        runtime.peer_metrics = child.metrics_text
        lifecycle = Unit(runtime, child, runtime.fanout)
    web = create_app(runtime.services, lifecycle=lifecycle, cors_origins=settings.cors_origins)
    server = _server_class()(server_config(web, settings, runtime.metrics))
    runtime.metrics.http_connections.set_function(lambda: len(server.server_state.connections))
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    where = f"http://{shown_host}:{settings.port}"
    if "web" in roles:
        what = f"dashboard on {where}/ (API docs /docs)"
    elif "collector" in roles:
        what = f"collecting on {where}/api/v1/events"
    else:
        what = f"processing; health and metrics on {where}/metrics"
    typer.echo(
        f"hitstream {'+'.join(sorted(shown_roles))}: {what}, data in {settings.data_dir.resolve()}"
    )
    server.run()


@app.command()
def serve(
    host: Host = None,
    port: Port = None,
    data_dir: DataDir = None,
    demo: Annotated[
        bool, typer.Option(help="Show a demo site: 60 days of history plus live visits")
    ] = False,
) -> None:
    """Run everything: collector, processor, stats API, live dashboard (on the embedded
    default the processor runs in a child process of this one: both cores)."""
    _run(frozenset({"collector", "processor", "web"}), host, port, data_dir, demo=demo)


@app.command()
def collector(host: Host = None, port: Port = None, data_dir: DataDir = None) -> None:
    """Run only the collector: POST /api/v1/events into the event log (scale out freely)."""
    _run(frozenset({"collector"}), host, port, data_dir)


@app.command()
def processor(host: Host = None, port: Port = None, data_dir: DataDir = None) -> None:
    """Run only a processor: event log -> store; /metrics and /readyz on the given port."""
    _run(frozenset({"processor"}), host, port, data_dir)


@app.command()
def web(host: Host = None, port: Port = None, data_dir: DataDir = None) -> None:
    """Run only the web role: Stats API, live WebSocket and dashboard."""
    _run(frozenset({"web"}), host, port, data_dir)


@app.command()
def migrate(
    data_dir: DataDir = None,
    rebuild_rollups: Annotated[
        bool,
        typer.Option(
            "--rebuild-rollups",
            help="PostgreSQL: recompute the hourly rollups from every stored event (after an "
            "upgrade, or to repair them); processor writes wait until it is done",
        ),
    ] = False,
) -> None:
    """Apply pending store schema migrations and exit."""
    from hitstream.bootstrap import make_store

    settings = _settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> int | None:
        store = make_store(settings.resolved_store_url(), settings)
        await store.start()  # connects and applies what is pending (under a lock on PostgreSQL)
        try:
            await store.migrate()  # idempotent: proves the schema is complete
            return await store.rebuild_rollups() if rebuild_rollups else None
        finally:
            await store.close()

    began = time.perf_counter()
    rebuilt = asyncio.run(run())
    typer.echo(f"store schema is up to date ({urlsplit(settings.resolved_store_url()).scheme})")
    if rebuild_rollups:
        typer.echo(
            f"rollups rebuilt from {rebuilt:,} events in {time.perf_counter() - began:.1f} s"
            if rebuilt is not None
            else "this store keeps no rollups: nothing to rebuild"
        )


@app.command()
def generate(
    url: Annotated[
        str, typer.Option(help="Base URL of a hitstream (loopback only by default)")
    ] = "http://127.0.0.1:8080",
    site: Annotated[str, typer.Option(help="site_id of the synthetic site")] = "demo.example",
    rate: Annotated[
        float, typer.Option(help="Target events per second (0: as fast as possible)")
    ] = 50.0,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds")] = 60.0,
    count: Annotated[int | None, typer.Option(help="Stop after this many events")] = None,
    batch: Annotated[int, typer.Option(help="Events per request (1 = one request per event)")] = 1,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once")] = 16,
    seed: Annotated[int | None, typer.Option(help="Seed for repeatable traffic")] = None,
    pages: Annotated[int, typer.Option(help="Pages on the synthetic site")] = 40,
    bot_share: Annotated[float, typer.Option(help="Share of visits from bots (0..1)")] = 0.0,
    allow_remote: Annotated[bool, typer.Option(help="Allow a non-loopback target")] = False,
    mixed_visitors: Annotated[
        bool,
        typer.Option(
            help="Fill each batch with events of many visitors (throughput tests; the "
            "request's IP and User-Agent then stand for all of them)"
        ),
    ] = False,
) -> None:
    """Send realistic synthetic traffic to a hitstream, bounded in time and count."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hitstream.errors import ConfigError
    from hitstream.synthetic.generator import run_generate

    with Progress(
        TextColumn("[bold]generate[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task("send", total=None, status="")

        def on_progress(p):  # type: ignore[no-untyped-def]
            bar.update(
                task,
                completed=p.sent,
                total=p.total,
                status=f"accepted {p.accepted} rejected {p.rejected} failed {p.failed}",
            )

        try:
            result = asyncio.run(
                run_generate(
                    url,
                    site,
                    rate=rate or None,
                    duration=duration,
                    count=count,
                    batch=batch,
                    concurrency=concurrency,
                    seed=seed,
                    pages=pages,
                    bot_share=bot_share,
                    allow_remote=allow_remote,
                    per_visitor=not mixed_visitors,
                    on_progress=on_progress,
                )
            )
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo(
        f"sent {result.sent} events in {result.requests} requests over {result.elapsed_s:.1f}s "
        f"({result.rate:.0f}/s): accepted {result.accepted}, rejected {result.rejected}, "
        f"failed {result.failed}; latency p50 {result.latency_p50_ms or 0:.1f} ms, "
        f"p99 {result.latency_p99_ms or 0:.1f} ms"
    )
    if result.failed:
        raise typer.Exit(1)


@app.command()
def replay(
    from_offset: Annotated[
        int | None, typer.Option(help="Start every partition at this offset")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Start at messages appended since this ISO 8601 time")
    ] = None,
    dead_letter: Annotated[
        bool, typer.Option("--dead-letter", help="Replay the dead-letter log instead")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Read the event log again from an offset or a time into the store (duplicates skipped)."""
    import time as _time

    from hitstream.bootstrap import build
    from hitstream.domain.validation import parse_timestamp
    from hitstream.services.replay import replay as run_replay

    if (from_offset is None) == (since is None):
        raise typer.BadParameter("give exactly one of --from-offset or --since")
    settings = _settings(data_dir=data_dir)
    _logging(settings.log_level)
    runtime = build(settings, frozenset({"processor"}))
    assert runtime.processor is not None
    runtime.processor.stream = f"replay:{runtime.log.stream}:{int(_time.time())}"

    async def run() -> tuple[int, int]:
        await runtime.start(run_processor=False)
        try:
            start: dict[int, int] = {}
            if since is not None:
                moment = parse_timestamp(since)
                if moment is None:
                    raise typer.BadParameter("--since must be ISO 8601 with a UTC offset")
                start = await runtime.log.offsets_for_time(moment)
            assert runtime.processor is not None
            result = await run_replay(
                runtime.processor,
                runtime.log,
                start=start,
                dead_letters=dead_letter,
                group=f"replay-{int(_time.time())}",
            )
            return result.messages, result.stored
        finally:
            await runtime.stop()

    messages, stored = asyncio.run(run())
    typer.echo(f"replayed {messages} message(s); {stored} event(s) were new to the store")


def main() -> None:
    app()


admin.install(app)  # sites, users, keys, forget


if __name__ == "__main__":  # pragma: no cover
    main()
