"""Which site each endpoint family of the seeds' clients serves.

A payload without a site goes to the family's site (``HITSTREAM_COMPAT_SITE_<FAMILY>``) or
the default (``HITSTREAM_COMPAT_SITE``); reads answer for the same site.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import HTTPConnection

from hitstream.domain.errors import QueryError
from hitstream.web.deps import services_of

FAMILIES: Final = {
    "event": "HITSTREAM_COMPAT_SITE_EVENT",
    "action": "HITSTREAM_COMPAT_SITE_ACTION",
    "events": "HITSTREAM_COMPAT_SITE_EVENTS",
    "ingest": "HITSTREAM_COMPAT_SITE_INGEST",
    "api_analytics": "HITSTREAM_COMPAT_SITE_API_ANALYTICS",
}
"""Endpoint family -> the setting that names its site (``docs/switching.md``)."""
WRITE_PATHS: Final = frozenset({"/event", "/events", "/ingest", "/api/analytics"})
"""Where the seeds' clients send events: CORS answers them like ``/api/v1/events``."""
READ_PATHS: Final = frozenset({"/analytics", "/stats", "/analytics/events", "/api/stats"})
"""The seeds' read endpoints: CORS answers them like the rest of the API."""


def configured_site(conn: HTTPConnection, family: str) -> str:
    """The site of an endpoint family, or ``QueryError`` naming the settings to set."""
    sites = services_of(conn).compat_sites
    site = sites.get(family) or sites.get("", "")
    if not site:
        raise QueryError(
            "site_id",
            f"is not given and no site is configured: set HITSTREAM_COMPAT_SITE or "
            f"{FAMILIES[family]}",
        )
    return site
