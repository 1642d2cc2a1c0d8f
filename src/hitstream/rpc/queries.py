"""gRPC requests as Stats API questions: the HTTP parameters they mirror, then ``build_query``.

Each request carries the HTTP query parameters as fields (an empty field is "not given", as
an absent parameter), plus ``date`` (one day, short for a custom period) and the per-user and
per-page counts of seed 002, which are breakdowns by ``user_id`` and ``page``. The edge checks
HTTP's FastAPI annotations make (site_id shape, filters length) are made here; everything else
is ``hitstream.domain.stats.build_query``'s, so a question asked over either edge is the same
``StatsQuery``. A ``QueryError`` names the *request field*: ``date_from``, not HTTP's ``from``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Final, Protocol

from hitstream.domain.errors import QueryError
from hitstream.domain.stats import Filter, StatsQuery, build_query
from hitstream.domain.validation import split_location

SITE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
MAX_SITE_ID: Final = 100
MAX_FILTERS: Final = 2000
"""The HTTP API's bounds (``web/stats.py``), the same here."""
COUNTS: Final = ("events", "visitors")
"""The metrics of ``UserEvents`` and ``PageEvents``, in the order their rows are ranked."""


class PeriodFields(Protocol):
    """Fields 1-7 of every request that covers a period (see the .proto)."""

    @property
    def site_id(self) -> str: ...
    @property
    def period(self) -> str: ...
    @property
    def date_from(self) -> str: ...
    @property
    def date_to(self) -> str: ...
    @property
    def date(self) -> str: ...
    @property
    def tz(self) -> str: ...
    @property
    def filters(self) -> str: ...


def check_site_id(site_id: str) -> str:
    if not site_id:
        raise QueryError("site_id", "is required")
    if len(site_id) > MAX_SITE_ID or not SITE_ID.match(site_id):
        raise QueryError("site_id", "must be a site id like example.com")
    return site_id


def renamed(error: QueryError, fields: PeriodFields) -> QueryError:
    """``build_query``'s error with the field named as in the request."""
    name = {"from": "date_from", "to": "date_to"}.get(error.field, error.field)
    if fields.date and error.field in ("from", "to", "period"):
        name = "date"
    if name == error.field:
        return error
    return QueryError(name, error.reason)


def build(
    fields: PeriodFields,
    *,
    now_ms: int,
    tz: str,
    metrics: Sequence[str] = (),
    interval: str = "",
    property: str = "",
    limit: int = 0,
    compare: str = "",
) -> StatsQuery:
    """The ``StatsQuery`` the HTTP API builds from the same parameters; ``tz`` is the zone to
    use (the request's, or the site's default)."""
    check_site_id(fields.site_id)
    if len(fields.filters) > MAX_FILTERS:
        raise QueryError("filters", f"must be at most {MAX_FILTERS} characters")
    period, date_from, date_to = fields.period, fields.date_from, fields.date_to
    if fields.date:
        if date_from or date_to:
            raise QueryError("date", "cannot be combined with date_from or date_to")
        if period not in ("", "custom"):
            raise QueryError("date", "is a custom period: leave period empty or custom")
        period, date_from, date_to = "custom", fields.date, fields.date
    try:
        return build_query(
            now_ms=now_ms,
            site_id=fields.site_id,
            period=period or None,
            date_from=date_from or None,
            date_to=date_to or None,
            metrics=",".join(metrics) or None,
            filters=fields.filters or None,
            interval=interval or None,
            property=property or None,
            limit=limit or None,
            tz=tz,
            compare=compare or None,
        )
    except QueryError as exc:
        raise renamed(exc, fields) from exc


def with_filter(query: StatsQuery, clause: Filter) -> StatsQuery:
    """``query`` also filtered by ``clause`` (a value is taken whole: ``|`` or ``;`` in a
    user id or a path is part of it, not syntax)."""
    return dataclasses.replace(query, filters=(*query.filters, clause))


def user_filter(user_id: str) -> Filter:
    return Filter("user_id", "==", (user_id,))


def page_filters(page_url: str) -> tuple[Filter, ...]:
    """``page==<path>`` (and ``hostname==<host>`` for an absolute URL), the path and host
    taken from ``page_url`` as the collector takes them from an event's url."""
    if page_url.startswith("/"):
        _, path, _ = split_location("", page_url)
        return (Filter("page", "==", (path,)),)
    if page_url.lower().startswith(("http://", "https://")):
        host, path, _ = split_location(page_url, "")
        if not host:
            raise QueryError("page_url", "has no host")
        return (Filter("hostname", "==", (host,)), Filter("page", "==", (path,)))
    raise QueryError("page_url", "must be a path starting with / or an absolute http(s) URL")
