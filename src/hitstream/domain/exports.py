"""Exports as values: stats answers as tables, CSV cells made safe, events as records and back.

Nothing here writes a file: callers hand the rows to a writer (``csv``, a ZIP, a parquet
file). The rules:

- A stats answer becomes one table: an aggregate is one row with a column per metric (and
  ``<metric>_previous``, ``<metric>_change`` when compared), a timeseries one row per bucket
  (``bucket`` in epoch ms as in JSON, ``time`` in ISO 8601 in the query's zone, then the
  metrics), a breakdown one row per value (``value``, then the metrics).
- CSV is RFC 4180 (``csv`` module: a field with a comma, quote or line break is quoted, quotes
  doubled, lines end CRLF), and safe to open in a spreadsheet: a text cell that starts with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's advice
  on CSV injection), so it is shown as text, never run as a formula. Numbers we write are
  never prefixed.
- An exported event is a record of every stored column (``EVENT_FIELDS``), props an object of
  canonical text; ``event_from_record`` reads one back, checking every field.
- Visits are rebuilt from their exported events (``Visits``) by the sessionizer's rules,
  replayed in the export's order (time, then event id): the same visits whenever the events of
  a visit reached the processor in time order, the normal case.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from hitstream.domain.errors import QueryError
from hitstream.domain.events import EventType, ProcessedEvent, Session, is_engagement
from hitstream.domain.sessions import count_into, new_visit

EVENT_FIELDS: Final = tuple(f.name for f in fields(ProcessedEvent))
"""Columns of an exported event, in order: every stored column of ``events``."""
_INT_FIELDS: Final = frozenset({"timestamp", "received_at"})
_OPTIONAL_INTS: Final = frozenset(
    {"screen_width", "duration_ms", "load_time_ms", "engaged_ms", "scroll_depth"}
)
_UNSAFE_START: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text (OWASP CSV injection: prefix with ``'``)."""
    return "'" + text if text.startswith(_UNSAFE_START) else text


def safe_value(value: object) -> object:
    """A CSV cell: text made safe (``safe_cell``), None empty, numbers as they are."""
    if value is None:
        return ""
    if isinstance(value, str):
        return safe_cell(value)
    return value


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """RFC 4180 CSV with a header row; text cells made safe (``safe_cell``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_value(v) for v in row])
    return out.getvalue()


def _time(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ZoneInfo(tz)).isoformat()


def stats_table(
    kind: str, body: dict[str, Any], metrics: Sequence[str], tz: str = "UTC"
) -> tuple[list[str], list[list[object]]]:
    """The header and rows of a stats answer (``aggregate``, ``timeseries``, ``breakdown``)
    as the Stats API's JSON gives it."""
    results = body["results"]
    if kind == "aggregate":
        header = list(metrics)
        row: list[object] = [results[m]["value"] for m in metrics]
        if "compare" in body:
            for m in metrics:
                header += [f"{m}_previous", f"{m}_change"]
                row += [results[m]["previous"], results[m]["change"]]
        return header, [row]
    if kind == "timeseries":
        header = ["bucket", "time", *metrics]
        rows = [[p["bucket"], _time(p["bucket"], tz), *(p[m] for m in metrics)] for p in results]
        return header, rows
    header = ["value", *metrics]
    return header, [[r["value"], *(r[m] for m in metrics)] for r in results]


# -- events --------------------------------------------------------------------------------


def event_record(event: ProcessedEvent) -> dict[str, Any]:
    """Every stored column of an event, by name (props an object of text)."""
    record = {name: getattr(event, name) for name in EVENT_FIELDS}
    record["props"] = dict(event.props)
    return record


def event_row(event: ProcessedEvent) -> list[object]:
    """An event as a CSV row of ``EVENT_FIELDS`` (props as JSON text)."""
    record = event_record(event)
    record["props"] = json.dumps(record["props"], ensure_ascii=False, sort_keys=True)
    return [record[name] for name in EVENT_FIELDS]


def event_from_record(record: object, site_id: str, where: str) -> ProcessedEvent:
    """An event from an exported record, for ``site_id``; ``QueryError`` naming ``where``
    (e.g. ``line 12``) and the field when the record is not one."""
    if not isinstance(record, dict):
        raise QueryError(where, "is not a JSON object")
    values: dict[str, Any] = {}
    for name in EVENT_FIELDS:
        value = record.get(name)
        if name == "props":
            if value is None:
                value = {}
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str | int | float | bool)
                for k, v in value.items()
            ):
                raise QueryError(f"{where}: props", "must be an object of scalar values")
        elif name in _INT_FIELDS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise QueryError(f"{where}: {name}", "must be an integer")
        elif name in _OPTIONAL_INTS:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise QueryError(f"{where}: {name}", "must be an integer or null")
        else:
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise QueryError(f"{where}: {name}", "must be a string")
        values[name] = value
    if not values["event_id"]:
        raise QueryError(f"{where}: event_id", "must not be empty")
    if values["type"] not in {t.value for t in EventType}:
        raise QueryError(f"{where}: type", f"unknown event type {values['type']!r}")
    values["site_id"] = site_id
    return ProcessedEvent(**values)


class Visits:
    """Visits rebuilt from events that carry their ``session_id``, by the rules of
    ``Sessionizer.assign`` (``domain.sessions``), applied in the order events are added."""

    def __init__(self) -> None:
        self._visits: dict[tuple[str, str], Session] = {}

    def add(self, event: ProcessedEvent) -> None:
        if not event.session_id or is_engagement(event.type):
            return  # an engagement event never starts or changes a visit (``Sessionizer.attach``)
        key = (event.site_id, event.session_id)
        visit = self._visits.get(key)
        if visit is None:
            visit = self._visits[key] = new_visit(event, event.session_id)
        count_into(visit, event)

    def all(self) -> list[Session]:
        return list(self._visits.values())

    def __len__(self) -> int:
        return len(self._visits)
