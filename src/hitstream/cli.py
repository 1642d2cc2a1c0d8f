"""The ``hitstream`` command: serve · collector · processor · web · grpc · migrate · generate ·
replay (and, from ``hitstream.admin``, sites · users · keys · forget; from
``hitstream.transfer``, export · import).

Heavy imports stay inside the commands, so ``hitstream --help`` is quick.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Annotated, Final
from urllib.parse import urlsplit

import typer

from hitstream import admin, transfer

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
GrpcPort = Annotated[
    int | None,
    typer.Option(
        "--grpc-port",
        help="Also serve the gRPC stats service on this port (needs the grpc extra) "
        "[env HITSTREAM_GRPC_PORT]",
    ),
]
DEFAULT_GRPC_PORT = 50051
GRPC_EXTRA = "pip install 'hitstream[grpc]' (in a checkout: ./dev setup)"


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
    for name in redact.CLIENT_LOGGERS:  # a line per request, naming its whole URL: a webhook's
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


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


def _grpc_server_module() -> ModuleType:
    """``hitstream.rpc.server``, or a clear exit when the grpc extra is missing."""
    try:
        from hitstream.rpc import server
    except Exception as exc:  # ImportError, or protobuf's own version check
        typer.echo(
            f"the gRPC stats service needs the grpc extra ({exc}); install it: {GRPC_EXTRA}",
            err=True,
        )
        raise typer.Exit(2) from exc
    return server


GC_YOUNG_THRESHOLD: Final = 50_000
"""Allocations between two collections of the youngest generation (Python's default: 700)."""


def _tune_gc() -> None:
    """Freeze what start-up built (modules, the app, settings: never garbage) out of every
    collection, and collect the young generation every ``GC_YOUNG_THRESHOLD`` allocations.
    A processor write builds tens of thousands of dicts and lists that live for the write and
    die by reference count; at Python's defaults they set off collections that walked the
    whole heap, 41 % of the processor's samples while it drained a backlog of long visits and
    ~9 % of a realistic drain (decision 0035). Cycles are still collected, later."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
    # at exit, hand them back: frozen objects are never freed, and DuckDB's library then
    # reports every one of its objects among them as leaked (~45 lines on each shutdown)
    atexit.register(gc.unfreeze)


def _run(
    roles: frozenset[str],
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    *,
    demo: bool = False,
    grpc: bool = False,
    grpc_port: int | None = None,
) -> None:
    """Serve ``roles`` over HTTP; with ``grpc`` (serve and the grpc role), the gRPC stats
    service too when a gRPC port is set (the grpc role's default: 50051)."""
    from hitstream.unit import Lifecycle, ProcessorChild, Unit, processor_in_child

    settings = _settings(host, port, data_dir)
    if demo:
        settings.demo = True
    if grpc_port is not None:
        settings.grpc_port = grpc_port
    if "grpc" in roles and not settings.grpc_port:
        settings.grpc_port = DEFAULT_GRPC_PORT
    rpc = _grpc_server_module() if grpc and settings.grpc_port else None
    _logging(settings.log_level)
    from hitstream.bootstrap import check_settings

    check_settings(settings)  # a ConfigError before anything starts (main says it in a line)
    shown_roles = roles
    child = None
    if "processor" in roles and len(roles) > 1 and processor_in_child(settings):
        child = ProcessorChild(settings)  # the processor gets a process (a core) of its own
        child.spawn()  # now: it starts up while this process imports and builds
        settings, roles = child.parent_settings(), roles - {"processor"}
    if rpc is not None:
        roles = roles | {"grpc"}
    from hitstream.bootstrap import build
    from hitstream.web.app import create_app
    from hitstream.web.server import server_config

    runtime = build(settings, roles, alerting_here=True if child is not None else None)
    _tune_gc()
    runtime.announce = typer.echo  # first-run and demo links
    lifecycle: Lifecycle = runtime
    if child is not None:
        runtime.peer_metrics = child.metrics_text
        lifecycle = Unit(runtime, child, runtime.fanout, runtime.startup)
    grpc_where = ""
    if rpc is not None:
        assert runtime.stats is not None and runtime.gate is not None
        grpc_server = rpc.GrpcServer(
            runtime.stats,
            runtime.gate,
            runtime.metrics,
            runtime.store,
            host=settings.host,
            port=settings.grpc_port,
        )
        lifecycle = rpc.Served(lifecycle, grpc_server)
        grpc_where = rpc.address(
            "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host,
            settings.grpc_port,
        )
    web = create_app(runtime.services, lifecycle=lifecycle, cors_origins=settings.cors_origins)
    server = _server_class()(server_config(web, settings, runtime.metrics))
    runtime.stopping = lambda: server.should_exit  # a signal while start-up still waits
    runtime.on_fatal = lambda: setattr(server, "should_exit", True)
    web.on_start_failure = lambda: setattr(server, "should_exit", True)
    runtime.metrics.http_connections.set_function(lambda: len(server.server_state.connections))
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    where = f"http://{shown_host}:{settings.port}"
    if "web" in roles:
        what = f"dashboard on {where}/ (API docs /docs)"
    elif "collector" in roles:
        what = f"collecting on {where}/api/v1/events"
    elif "processor" in roles:
        what = f"processing; health and metrics on {where}/metrics"
    else:
        what = f"health and metrics on {where}/metrics"
    if grpc_where:
        what = f"{what}, gRPC stats on {grpc_where}"
    typer.echo(
        f"hitstream {'+'.join(sorted(shown_roles))}: {what}, data in {settings.data_dir.resolve()}"
    )
    server.run()
    from hitstream.errors import ConfigError

    wrong = web.start_failed if isinstance(web.start_failed, ConfigError) else runtime.fatal
    if wrong is not None:  # a setting: one line, as before start-up
        typer.echo(f"error: {wrong}", err=True)
        raise typer.Exit(2)
    if web.start_failed is not None:  # logged where it happened
        raise typer.Exit(3)


@app.command()
def serve(
    host: Host = None,
    port: Port = None,
    data_dir: DataDir = None,
    demo: Annotated[
        bool, typer.Option(help="Show a demo site: 60 days of history plus live visits")
    ] = False,
    grpc_port: GrpcPort = None,
) -> None:
    """Run everything: collector, processor, stats API, live dashboard (on the embedded
    default the processor runs in a child process of this one: both cores), and the gRPC
    stats service with --grpc-port."""
    _run(
        frozenset({"collector", "processor", "web"}),
        host,
        port,
        data_dir,
        demo=demo,
        grpc=True,
        grpc_port=grpc_port,
    )


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


@app.command("grpc")
def grpc_role(
    host: Host = None,
    port: Port = None,
    data_dir: DataDir = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(
            "--grpc-port",
            help=f"gRPC port [env HITSTREAM_GRPC_PORT, default {DEFAULT_GRPC_PORT}]",
        ),
    ] = None,
) -> None:
    """Run only the gRPC stats service (hitstream.v1.Stats, health, reflection) on
    --grpc-port; health and metrics over HTTP on --port. Needs the grpc extra."""
    _run(frozenset({"grpc"}), host, port, data_dir, grpc=True, grpc_port=grpc_port)


@app.command()
def migrate(
    data_dir: DataDir = None,
    rebuild_rollups: Annotated[
        bool,
        typer.Option(
            "--rebuild-rollups",
            help="recompute the half-hour rollups from every stored event (after an upgrade, "
            "or to repair them); processor writes wait until it is done",
        ),
    ] = False,
) -> None:
    """Apply pending store schema migrations and exit."""
    from hitstream.bootstrap import make_store

    settings = _settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    applied: list[str] = []

    async def run() -> int | None:
        store = make_store(settings.resolved_store_url(), settings)
        await store.start()  # connects and applies what is pending (under a lock on PostgreSQL)
        try:
            applied.extend(store.migrations_applied)
            applied.extend(await store.migrate())  # idempotent: proves the schema is complete
            return await store.rebuild_rollups() if rebuild_rollups else None
        finally:
            await store.close()

    began = time.perf_counter()
    rebuilt = asyncio.run(run())
    scheme = urlsplit(settings.resolved_store_url()).scheme
    if applied:  # it said "up to date" after creating the whole schema
        typer.echo(f"store schema migrated ({scheme}): applied {', '.join(applied)}")
    else:
        typer.echo(f"store schema is up to date ({scheme})")
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
        int | None, typer.Option(min=0, help="Start every partition at this offset")
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

    from hitstream.bootstrap import build, with_lent_store
    from hitstream.domain.validation import parse_timestamp
    from hitstream.services.replay import replay as run_replay

    if (from_offset is None) == (since is None):
        raise typer.BadParameter("give exactly one of --from-offset or --since")
    if since is not None and dead_letter:  # times are looked up in the log, not its letters
        raise typer.BadParameter("--dead-letter takes --from-offset (0: every dead letter)")
    settings = with_lent_store(_settings(data_dir=data_dir))
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
                default=from_offset or 0,
                dead_letters=dead_letter,
                group=f"replay-{int(_time.time())}",
            )
            return result.messages, result.stored
        finally:
            await runtime.stop()

    messages, stored = asyncio.run(run())
    typer.echo(f"replayed {messages} message(s); {stored} event(s) were new to the store")


def main() -> None:
    # what hitstream writes (the embedded store and log: users' emails and password hashes,
    # the events; salts; exports) is its user's alone, whatever the shell's umask
    os.umask(0o077)
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from hitstream.errors import AdapterUnavailable, ConfigError, QueryError

    try:
        app()
    except ConfigError as exc:  # a setting that cannot work: one line, not a traceback
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except QueryError as exc:
        typer.echo(f"error: {exc.field}: {exc.reason}", err=True)
        raise SystemExit(2) from None
    except AdapterUnavailable as exc:  # the log or store refused at start-up
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except ValidationError as exc:  # the settings' own checks (HITSTREAM_* variables)
        for error in exc.errors():
            name = "HITSTREAM_" + "_".join(str(part) for part in error["loc"]).upper()
            typer.echo(f"error: {name}: {error['msg']} (got {error.get('input')!r})", err=True)
        raise SystemExit(2) from None
    except SettingsError as exc:  # a variable that is not even of its kind (JSON, a list)
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        name = f"HITSTREAM_{field.upper()}: " if field else ""
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        typer.echo(f"error: {name}cannot be read{cause}", err=True)
        raise SystemExit(2) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:  # a named file
        typer.echo(f"error: {exc.strerror}: {exc.filename}", err=True)
        raise SystemExit(1) from None


admin.install(app)  # sites, users, keys, forget
transfer.install(app)  # export, import


if __name__ == "__main__":  # pragma: no cover
    main()
