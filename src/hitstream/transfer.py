"""The ``hitstream export | import`` commands: a site's raw events out of the store and back.

``export`` streams the processed events of one site (every stored column, props included)
in pages of ``PAGE`` events (``Store.events_page``, in time then event id order), so memory
holds one page whatever the size of the site; NDJSON and CSV are written as the pages come,
parquet by DuckDB from that NDJSON stream (``COPY ... TO ... (FORMAT parquet)``, which reads
and writes in row groups). ``import`` reads an NDJSON export back, idempotent by
``event_id``: a first pass rebuilds the visits (``domain.exports.Visits``: memory grows with
the visits, not the events), a second writes the events in batches with their visits, as the
processor does. Both open the store as the other admin commands do (``bootstrap.open_store``:
the control socket of a running ``serve``, or the store itself): whoever may open the data
folder or the store URL is the local admin, and only a registered site is served.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any, Final, TextIO

import typer

from hitstream.admin import DataDir

PAGE: Final = 5000
FORMATS: Final = ("ndjson", "csv", "parquet")
_FAR: Final = 2**62


def _fail(field: str, reason: str) -> typer.Exit:
    typer.echo(f"error: {field}: {reason}", err=True)
    return typer.Exit(1)


async def _pages(store: Any, site: str, start: int, end: int) -> AsyncIterator[list[Any]]:
    after: tuple[int, str] | None = None
    while True:
        page = await store.events_page(site, start, end, after, PAGE)
        if not page:
            return
        yield page
        last = page[-1]
        after = (last.timestamp, last.event_id)


def _range(site: Any, first: str | None, last: str | None) -> tuple[int, int]:
    """[start, end) in epoch ms: whole days in the site's zone; a missing end is open."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from hitstream.domain.errors import QueryError
    from hitstream.domain.stats import parse_day

    zone = ZoneInfo(site.timezone)

    def midnight(text: str, flag: str, days: int) -> int:
        day = parse_day(text, flag) + timedelta(days=days)  # the API's days (LAST_DAY: +1 fits)
        return int(datetime(day.year, day.month, day.day, tzinfo=zone).timestamp() * 1000)

    start = -_FAR if first is None else midnight(first, "--from", 0)
    end = _FAR if last is None else midnight(last, "--to", 1)
    if end <= start:
        raise QueryError("--to", "must not be before --from")
    return start, end


async def _write_text(store: Any, site: str, span: tuple[int, int], fmt: str, out: TextIO) -> int:
    from hitstream.domain.exports import EVENT_FIELDS, event_record, event_row, safe_value

    written = 0
    writer = csv.writer(out, lineterminator="\r\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EVENT_FIELDS)
    async for page in _pages(store, site, *span):
        for event in page:
            if writer is not None:
                writer.writerow([safe_value(v) for v in event_row(event)])
            else:
                out.write(json.dumps(event_record(event), ensure_ascii=False) + "\n")
        written += len(page)
    return written


def _parquet(ndjson: Path, output: Path) -> None:
    """Parquet from the NDJSON export, by DuckDB: typed columns, props a MAP of text."""
    import duckdb

    from hitstream.domain.exports import EVENT_FIELDS

    ints = {
        "timestamp",
        "received_at",
        "screen_width",
        "duration_ms",
        "load_time_ms",
        "engaged_ms",
        "scroll_depth",
    }
    columns = {
        name: "BIGINT"
        if name in ints
        else "MAP(VARCHAR, VARCHAR)"
        if name == "props"
        else "VARCHAR"
        for name in EVENT_FIELDS
    }
    spec = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()) + "}"
    conn = duckdb.connect()
    try:
        conn.execute("SET preserve_insertion_order = true")
        conn.execute(
            f"COPY (SELECT * FROM read_json($src, format = 'newline_delimited', "
            f"columns = {spec})) TO '{_quoted(output)}' (FORMAT parquet)",
            {"src": str(ndjson)},
        )
    finally:
        conn.close()


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def export(
    site: Annotated[str, typer.Option(help="The site whose events to export")],
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD, in the site's zone")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="Last day (inclusive), YYYY-MM-DD")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="ndjson, csv or parquet")] = "ndjson",
    output: Annotated[
        Path | None, typer.Option("--output", help="Write here (default: standard output)")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Stream a site's raw processed events (every stored column, props included)."""
    from hitstream.admin import _run
    from hitstream.domain.errors import NotFound

    if format not in FORMATS:
        raise _fail("format", f"must be one of {', '.join(FORMATS)}")
    if format == "parquet" and output is None:
        raise _fail("output", "parquet needs --output FILE")

    async def job(store: Any) -> int:
        registered = await store.get_site(site)
        if registered is None:
            raise NotFound("site", f"{site} is not a registered site")
        span = _range(registered, date_from, date_to)
        if format == "parquet":
            assert output is not None
            with tempfile.TemporaryDirectory(dir=output.parent) as folder:
                staged = Path(folder) / "events.ndjson"
                with staged.open("w", encoding="utf-8") as out:
                    count = await _write_text(store, site, span, "ndjson", out)
                await asyncio.to_thread(_parquet, staged, output)
            return count
        if output is None:
            return await _write_text(store, site, span, format, sys.stdout)
        with output.open("w", encoding="utf-8", newline="") as out:
            return await _write_text(store, site, span, format, out)

    count = _run(data_dir, job)
    typer.echo(f"exported {count} event(s) of {site}", err=True)


def _records(path: Path, site: str) -> Iterator[Any]:
    """The file's events, for ``site``. An event exported from another site gets ids of its
    own there (``moved_ids``): the ids of events and visits are unique across a store, so
    the copy of a site in the same store read as "already stored" and nothing came in."""
    from dataclasses import replace

    from hitstream.domain.errors import QueryError
    from hitstream.domain.exports import event_from_record

    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise QueryError(f"line {number}", "is not JSON") from None
            event = event_from_record(record, site, f"line {number}")
            source = record.get("site_id")
            if isinstance(source, str) and source and source != site:
                event_id, session_id = moved_ids(site, event.event_id, event.session_id)
                event = replace(event, event_id=event_id, session_id=session_id)
            yield event


def moved_ids(site: str, event_id: str, session_id: str) -> tuple[str, str]:
    """An event's ids in another site: derived from the site and the old ids, so importing
    the same file twice still skips what came in the first time. A visit id keeps its first
    12 hex digits (its start: ``session_id_for``), so the store's index stays time-ordered."""
    from hitstream.services.collector import client_event_id

    if not session_id:
        return client_event_id(site, event_id), ""
    digest = hashlib.blake2b(f"{site}\x1f{session_id}".encode(), digest_size=6).hexdigest()
    return client_event_id(site, event_id), f"{session_id[:12]}{digest}"


def import_events(
    file: Annotated[Path, typer.Argument(help="An NDJSON export (hitstream export)")],
    site: Annotated[str, typer.Option(help="The registered site to import into")],
    data_dir: DataDir = None,
) -> None:
    """Import an NDJSON export into a site: events already stored (by event_id) are
    skipped, visits are rebuilt from the events, and the stats follow."""
    from hitstream.admin import _run
    from hitstream.domain.errors import NotFound
    from hitstream.domain.exports import Visits
    from hitstream.stores.base import WriteBatch

    if not file.is_file():
        raise _fail("file", f"{file} is not a file")

    async def job(store: Any) -> tuple[int, int, int]:
        if await store.get_site(site) is None:
            raise NotFound("site", f"{site} is not a registered site: add it first")
        visits = Visits()
        for event in _records(file, site):  # pass 1: the visits (and every line checked)
            visits.add(event)
        rows = {v.session_id: v for v in visits.all()}
        new = seen = 0
        batch: list[Any] = []

        async def flush() -> None:
            nonlocal new, seen
            known = await store.known_event_ids([e.event_id for e in batch])
            fresh: dict[str, Any] = {}
            for event in batch:  # the first copy of an id wins, as in every store
                if event.event_id not in known:
                    fresh.setdefault(event.event_id, event)
            sessions = {e.session_id for e in fresh.values() if e.session_id}
            await store.write(
                WriteBatch(
                    f"import:{site}",
                    {},
                    list(fresh.values()),
                    [rows[s] for s in sorted(sessions)],
                )
            )
            new += len(fresh)
            seen += len(batch) - len(fresh)
            batch.clear()

        for event in _records(file, site):  # pass 2: the events, with their visits
            batch.append(event)
            if len(batch) >= PAGE:
                await flush()
        if batch:
            await flush()
        return new, seen, len(visits)

    new, seen, count = _run(data_dir, job)
    typer.echo(
        f"imported {new} event(s) into {site} ({seen} already stored); "
        f"the file holds {count} visit(s)"
    )


def install(app: typer.Typer) -> None:
    """Add these commands to the ``hitstream`` command."""
    app.command("export")(export)
    app.command("import")(import_events)
