"""The ASGI app: routes, CORS, JSON errors, and the lifespan that starts and drains a runtime.

Errors speak one language: ``{"error": {"field": ..., "reason": ...}}`` with a 4xx status for
anything the client can fix; a ``QueryError`` (whoever raised it) is a 400 here and nowhere
else. Routes get their services from ``AppServices`` (``hitstream.web.deps``), which bootstrap
builds; a role's routes are mounted when its services exist. Shutdown order matters: uvicorn
stops accepting requests and finishes the ones in flight, then the lifespan stops the runtime,
which closes live connections and drains the event log into the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from hitstream import __version__
from hitstream.errors import (
    AccessDenied,
    AdapterUnavailable,
    ConfigError,
    Conflict,
    NotFound,
    QueryError,
    RateLimited,
    StoreRefused,
    public_reason,
)
from hitstream.web import (
    alerts,
    collect,
    dashboard,
    docs,
    goals,
    live,
    openapi,
    ops,
    pages,
    sites,
    stats,
)
from hitstream.web.compat import plausible, seeds, umami
from hitstream.web.cors import Cors
from hitstream.web.deps import AppServices, Startup, services_of
from hitstream.web.headers import DEFAULTS, SecurityHeaders
from hitstream.web.ingest import INGEST, LeanIngest
from hitstream.web.params import UnknownParameter

DESCRIPTION = """
Privacy-first, real-time website analytics. Send events to `POST /api/v1/events`; read
aggregates, time series and breakdowns from the Stats API; watch live on `/api/v1/live`.
Every 4xx answer is JSON naming the field and the reason.
"""

log = logging.getLogger(__name__)


_KINDS: Final = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "list": "a list",
    "dict": "an object",
    "none": "null",
}


def _union_kinds(errors: Sequence[Any], where: tuple[Any, ...]) -> list[str]:
    """The types a union at ``where[:-1]`` takes, when the request's errors are that union's
    members failing one by one (pydantic adds each member's type to the path: ``props.plan.
    bool``); empty otherwise."""
    if len(where) < 2 or where[-1] not in _KINDS:
        return []
    tags = [
        tuple(e.get("loc", ()))[-1]
        for e in errors
        if tuple(e.get("loc", ()))[:-1] == where[:-1] and tuple(e.get("loc", ()))[-1] in _KINDS
    ]
    return [_KINDS[tag] for tag in dict.fromkeys(tags)] if len(tags) > 1 else []


def _lower_first(message: str) -> str:
    """pydantic's message as a reason ("String should ..." -> "string should ..."): only its
    first letter, so a pattern or a value quoted in it stays as it is."""
    return message[:1].lower() + message[1:]


def _error(status: int, field: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "reason": reason}}, status_code=status)


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")
INGEST_PATHS: Final = ("/api/v1/events", "/api/event", "/api/send")
"""The routes that take events (ours, Plausible's and Umami's trackers')."""


async def _not_collecting(request: Request) -> JSONResponse:
    """A process without the collector role (``hitstream web``) asked to take events."""
    services_of(request).metrics.requests_rejected.labels("404", "path").inc()
    return _error(
        404,
        "path",
        "this process takes no events (it has no collector role): send them to a collector; "
        "HITSTREAM_COLLECTOR_URL makes the snippets this server gives point there",
    )


def _allowed(request: Request) -> str:
    """Every method some route takes on this path (Starlette names its first route's only)."""
    methods = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(methods)


def nul_in_request(scope: Scope) -> str | None:
    """The part of a request's path or query that holds a NUL character (no store can hold
    or compare one: PostgreSQL refuses the text), by its parameter's name, or None."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "")[:100] or "query"
    return None


_WHILE_STARTING: Final = frozenset({"/healthz", "/readyz", "/metrics"})
"""What a process answers before its parts have started (decision 0058)."""


_STARTING_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hitstream is starting</title></head>
<body style="font: 16px system-ui, sans-serif; margin: 4rem auto; max-width: 32rem">
<h1 style="font-size: 1.3rem">hitstream is starting</h1>
<p>{waiting}. This page reloads by itself.</p></body></html>
"""


def _starting(scope: Scope, startup: Startup) -> Response:
    """503 while the process starts: JSON naming the wait, or for a browser asking for a
    page, a page that reloads itself (a newcomer opening the dashboard a second early)."""
    waiting = f"waiting for the {startup.waiting_for}" if startup.waiting_for else "starting up"
    accept = next((v for k, v in scope.get("headers", ()) if k == b"accept"), b"")
    response: Response
    if scope.get("method") == "GET" and b"text/html" in accept:
        page = _STARTING_PAGE.format(waiting=waiting.capitalize())
        response = HTMLResponse(page, status_code=503)
    else:
        response = _error(503, "server", f"starting: {waiting}; try again shortly")
    response.headers["retry-after"] = "5"
    for name, value in DEFAULTS:  # (no middleware runs before the start-up is done)
        response.headers.setdefault(name, value)
    if response.media_type == "text/html":  # its one inline style, nothing else
        response.headers["content-security-policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        )
    return response


class HitstreamApp(FastAPI):
    """FastAPI, except that ``POST /api/v1/events`` goes straight to the lean endpoint
    (``web/ingest.py``), before any middleware or routing, and a request whose path or query
    holds a NUL character is a 400 naming the parameter before any route reads it."""

    lean: LeanIngest | None = None
    refused: Callable[[str], None] | None = None
    """Counts a request refused here by field (``requests_rejected``)."""
    startup: Startup | None = None
    start_failed: BaseException | None = None
    """What stopped the lifespan's start (the process then exits: ``on_start_failure``)."""
    on_start_failure: Callable[[], None] | None = None
    """Asks the HTTP server to stop (set by the CLI, which then exits non-zero)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.startup is not None and not self.startup.done and scope["type"] != "lifespan":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013})  # try again later
                return
            if scope["path"] not in _WHILE_STARTING:
                await _starting(scope, self.startup)(scope, receive, send)
                return
        if scope["type"] in ("http", "websocket"):
            where = nul_in_request(scope)
            if where is not None:
                if self.refused is not None:
                    self.refused(where)
                if scope["type"] == "http":
                    await _error(400, where, "must not contain a NUL character")(
                        scope, receive, send
                    )
                else:  # a WebSocket handshake refused: 1008, the policy's code
                    await send({"type": "websocket.close", "code": 1008})
                return
        if (
            self.lean is not None
            and scope["type"] == "http"
            and scope["path"] == INGEST
            and scope["method"] == "POST"
        ):
            await self.lean(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class Lifecycle(Protocol):
    """What the app starts with its lifespan and stops after the last request (a Runtime)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def create_app(
    services: AppServices,
    *,
    lifecycle: Lifecycle | None = None,
    cors_origins: Sequence[str] = (),
) -> HitstreamApp:
    metrics = services.metrics

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """Start in the background so that the port opens at once (a role whose database
        is down waits for it with ``/healthz`` answering, decision 0058); stop after the
        start has ended (a signal ends its waits)."""
        if lifecycle is None:
            yield
            return
        services.startup.done = False
        starting = asyncio.create_task(_start(lifecycle))
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # reported by _start
                await starting
            if app.start_failed is None:
                await lifecycle.stop()
            else:  # what did start is closed as well as it can be: the process exits
                try:
                    await lifecycle.stop()
                except Exception as exc:
                    log.warning("stopping after a failed start: %r", exc)

    async def _start(lifecycle: Lifecycle) -> None:
        startup = services.startup
        try:
            await lifecycle.start()
        except ConfigError as exc:  # a setting no retry mends: the CLI prints it in one line
            app.start_failed = exc
            if app.on_start_failure is not None:
                app.on_start_failure()
            raise
        except Exception as exc:
            log.exception("start-up failed: stopping")
            app.start_failed = exc
            if app.on_start_failure is not None:
                app.on_start_failure()
            raise
        startup.done = True

    app = HitstreamApp(
        title="hitstream",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # web/docs.py serves it without a CDN
        redoc_url=None,
    )
    app.state.services = services
    app.startup = services.startup
    # by one label: a parameter's name is the sender's text (every name a series of its own)
    app.refused = lambda field: metrics.requests_rejected.labels("400", "nul").inc()
    app.add_middleware(Cors, origins=list(cors_origins))
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("request",), "msg": "invalid"}
        where = tuple(first.get("loc", ()))
        if where[:1] == ("body",):
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media and media != "application/json" and not media.endswith("+json"):
                metrics.requests_rejected.labels("415", "content-type").inc()
                return _error(
                    415, "content-type", f"send the body as application/json, not {media}"
                )
            if first.get("type") == "json_invalid":  # loc is ("body", character position)
                at = where[1] if len(where) > 1 else 0
                ctx = first.get("ctx")
                why = str(ctx.get("error", "") if isinstance(ctx, dict) else "").lower()
                why = why or "not valid JSON"
                metrics.requests_rejected.labels("400", "body").inc()
                return _error(400, "body", f"is not valid JSON: {why} at character {at}")
        reason = _lower_first(str(first.get("msg", "is invalid")))
        kinds = _union_kinds(exc.errors(), where)
        if kinds:  # a value of none of a union's types: pydantic names each member's failure
            where, reason = where[:-1], "must be " + " or ".join(kinds)
        loc = [str(part) for part in where if part not in ("query", "body")]
        field = ".".join(loc) or "request"
        # labelled by the top-level name only: deeper parts can be the sender's own keys
        metrics.requests_rejected.labels("400", loc[0] if loc else "request").inc()
        return _error(400, field, reason)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """A bug's answer: JSON like every other error, with the security headers (this
        handler runs outside the middleware that adds them; it was plain text without them).
        The traceback is logged by the server as before; nothing of it goes to the client."""
        metrics.requests_rejected.labels("500", "server").inc()
        body = {"error": {"field": "server", "reason": "internal error"}}
        return JSONResponse(body, status_code=500, headers=dict(DEFAULTS))

    @app.exception_handler(QueryError)
    async def bad_query(request: Request, exc: QueryError) -> JSONResponse:
        """The one place a query the rules refuse becomes a 400, whoever found the problem
        (``build_query`` on the way in, or a store asked something it cannot answer)."""
        if isinstance(exc, StoreRefused):
            log.warning(
                "%s %s: the store refused a value: %s", request.method, request.url.path, exc
            )
        label = "unknown_parameter" if isinstance(exc, UnknownParameter) else exc.field
        metrics.requests_rejected.labels(str(exc.status), label).inc()
        return _error(exc.status, exc.field, exc.reason)

    @app.exception_handler(AccessDenied)
    async def denied(request: Request, exc: AccessDenied) -> JSONResponse:
        metrics.requests_rejected.labels(str(exc.status), exc.field).inc()
        response = _error(exc.status, exc.field, exc.reason)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="hitstream"'
        return response

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        metrics.requests_rejected.labels("404", exc.field).inc()
        return _error(404, exc.field, exc.reason)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        metrics.requests_rejected.labels("409", exc.field).inc()
        return _error(409, exc.field, exc.reason)

    @app.exception_handler(RateLimited)
    async def limited(request: Request, exc: RateLimited) -> JSONResponse:
        metrics.requests_rejected.labels("429", exc.field).inc()
        response = _error(429, exc.field, exc.reason)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(AdapterUnavailable)
    async def unavailable(request: Request, exc: AdapterUnavailable) -> JSONResponse:
        log.warning("%s %s answered 503: %s", request.method, request.url.path, exc)
        response = _error(503, "service", public_reason(exc))
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = (
            "path" if exc.status_code == 404 else "method" if exc.status_code == 405 else "request"
        )
        if exc.status_code < 500:
            metrics.requests_rejected.labels(str(exc.status_code), field).inc()
        response = _error(exc.status_code, field, str(exc.detail).lower())
        response.headers.update(exc.headers or {})  # 405 carries Allow
        if exc.status_code == 405:  # every method of the path, not only its first route's
            response.headers["Allow"] = _allowed(request)
        return response

    app.include_router(ops.router)
    docs.mount(app, app.title)
    openapi.install(app)
    if services.collector is not None:
        app.include_router(collect.router)
        app.include_router(plausible.router)
        app.include_router(umami.router)
        app.lean = LeanIngest(services, cors_origins)
    else:  # say why, instead of "not found": a snippet pointing here sends nothing anywhere
        for path in INGEST_PATHS:
            app.add_api_route(path, _not_collecting, methods=["POST"], include_in_schema=False)
    if services.stats is not None:  # the web role
        app.include_router(stats.router)
        app.include_router(sites.router)
        app.include_router(goals.router)
        app.include_router(live.router)
        app.include_router(alerts.router)
        app.include_router(pages.router)
        dashboard.mount(app)
    seeds.mount(app, services)  # the seeds' clients (web.compat)
    return app
