"""The ``hitstream`` command: serve · migrate · generate (heavy imports stay inside commands)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

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
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def serve(host: Host = None, port: Port = None, data_dir: DataDir = None) -> None:
    """Run everything in one process: collector, processor, stats API, live dashboard."""
    import uvicorn

    from hitstream.bootstrap import build
    from hitstream.web.app import create_app

    settings = _settings(host, port, data_dir)
    _logging(settings.log_level)
    runtime = build(settings)
    web = create_app(runtime)
    config = uvicorn.Config(
        web,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    typer.echo(
        f"hitstream {os.environ.get('HITSTREAM_VERSION_NOTE', '')}".strip()
        + f": dashboard on http://{shown_host}:{settings.port}/ "
        f"(API docs /docs, data in {settings.data_dir.resolve()})"
    )
    server.run()


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply pending store schema migrations and exit."""
    from hitstream.bootstrap import make_store

    settings = _settings(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> list[str]:
        store = make_store(settings.resolved_store_url(), settings)
        try:
            return await store.migrate()
        finally:
            await store.close()

    applied = asyncio.run(run())
    typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
