"""CORS: browsers on a site's allowed hosts may send events; the read API stays the
dashboard's own, plus the origins an operator lists (``HITSTREAM_CORS_ORIGINS``).

Ingestion (``/api/v1/events``, the seeds' write endpoints, and Plausible's and Umami's
tracker endpoints ``/api/event`` and ``/api/send``) answers a preflight and a request from an
``Origin`` whose host is an allowed host of some registered site (the collector then checks
each event's site); any
other origin gets no CORS headers (preflight: 403), so its browser cannot even send. The rest
of the API answers CORS only for the listed origins and never allows credentials: a login
cookie is good on the dashboard's own origin only, and keys travel in headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hitstream.domain.sites import normal_host
from hitstream.errors import AdapterUnavailable
from hitstream.services.access import Gatekeeper
from hitstream.web.compat.seed_sites import READ_PATHS, WRITE_PATHS

INGEST: Final = "/api/v1/events"
INGEST_PATHS: Final = frozenset({INGEST, "/api/event", "/api/send"})
_INGEST_HEADERS: Final = "content-type, content-encoding, authorization, x-umami-cache"
_API_HEADERS: Final = "authorization, content-type, x-csrf-token"
_API_METHODS: Final = "GET, POST, PATCH, DELETE"


async def ingest_allowed(gate: Gatekeeper | None, origin: str) -> bool:
    """Whether ``origin``'s host is an allowed host of some registered site."""
    if gate is None:
        return False
    try:
        host = normal_host(urlsplit(origin).hostname or "")
        sites = await gate.sites()
    except (ValueError, AdapterUnavailable):
        return False
    return any(site.allows(host) for site in sites.values())


class Cors:
    def __init__(self, app: ASGIApp, origins: Sequence[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def _ingest_allowed(self, scope: Scope, origin: str) -> bool:
        return await ingest_allowed(getattr(scope["app"].state.services, "gate", None), origin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        path = scope.get("path", "")
        api = path.startswith("/api/") or path in READ_PATHS or path in WRITE_PATHS
        if origin is None or not api:
            await self.app(scope, receive, send)
            return
        ingest = path in INGEST_PATHS or path in WRITE_PATHS  # trackers and seeds (web.compat)
        allowed = (
            "*" in self.origins
            or origin in self.origins
            or await self._ingest_allowed(scope, origin)
            if ingest
            else "*" in self.origins or origin in self.origins
        )
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            response: Response
            if not allowed:
                response = JSONResponse(
                    {"error": {"field": "origin", "reason": "may not call this API"}},
                    status_code=403,
                )
            else:
                response = Response(status_code=204)
                response.headers.update(
                    {
                        "access-control-allow-origin": origin,
                        "access-control-allow-methods": "POST" if ingest else _API_METHODS,
                        "access-control-allow-headers": _INGEST_HEADERS if ingest else _API_HEADERS,
                        "access-control-max-age": "86400",
                    }
                )
            response.headers["vary"] = "Origin"
            await response(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.add_vary_header("Origin")
                if allowed:
                    out["access-control-allow-origin"] = origin
            await send(message)

        await self.app(scope, receive, send_with_cors)
