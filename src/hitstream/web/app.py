"""The ASGI app: routes, CORS, JSON errors, and the lifespan that starts and drains a Runtime.

Errors speak one language: ``{"error": {"field": ..., "reason": ...}}`` with a 4xx status for
anything the client can fix. Shutdown order matters: uvicorn stops accepting requests and
finishes the ones in flight, then the lifespan drains the event log into the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hitstream import __version__
from hitstream.domain.stats import QueryProblem
from hitstream.errors import AdapterUnavailable, QueryError
from hitstream.web import alerts, collect, dashboard, docs, live, openapi, ops, stats
from hitstream.web.headers import SecurityHeaders

if TYPE_CHECKING:
    from hitstream.bootstrap import Runtime

DESCRIPTION = """
Privacy-first, real-time website analytics. Send events to `POST /api/v1/events`; read
aggregates, time series and breakdowns from the Stats API; watch live on `/api/v1/live`.
Every 4xx answer is JSON naming the field and the reason.
"""


def _error(status: int, field: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "reason": reason}}, status_code=status)


def create_app(runtime: Runtime, *, manage_runtime: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_runtime:
            await runtime.start()
        try:
            yield
        finally:
            if "web" in runtime.roles:
                await live.close(app)
            if manage_runtime:
                await runtime.stop()

    app = FastAPI(
        title="hitstream",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # web/docs.py serves it without a CDN
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.collector = runtime.collector
    app.state.stats = runtime.stats
    app.state.trusted_proxies = runtime.trusted_proxies
    app.add_middleware(
        CORSMiddleware,
        allow_origins=runtime.settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["content-type", "content-encoding"],
        max_age=86_400,
    )
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": ("request",), "msg": "invalid"}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "body")]
        field = ".".join(loc) or "request"
        runtime.metrics.requests_rejected.labels("400", field).inc()
        return _error(400, field, str(first.get("msg", "is invalid")).lower())

    @app.exception_handler(QueryProblem)
    @app.exception_handler(QueryError)
    async def bad_query(request: Request, exc: QueryProblem | QueryError) -> JSONResponse:
        runtime.metrics.requests_rejected.labels("400", exc.field).inc()
        return _error(400, exc.field, exc.reason)

    @app.exception_handler(AdapterUnavailable)
    async def unavailable(request: Request, exc: AdapterUnavailable) -> JSONResponse:
        response = _error(503, "service", str(exc))
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = (
            "path" if exc.status_code == 404 else "method" if exc.status_code == 405 else "request"
        )
        if exc.status_code < 500:
            runtime.metrics.requests_rejected.labels(str(exc.status_code), field).inc()
        response = _error(exc.status_code, field, str(exc.detail).lower())
        response.headers.update(exc.headers or {})  # 405 carries Allow
        return response

    app.include_router(ops.router)
    docs.mount(app, app.title)
    openapi.install(app)
    if "collector" in runtime.roles:
        app.include_router(collect.router)
    if "web" in runtime.roles:
        app.include_router(stats.router)
        app.include_router(live.router)
        app.include_router(alerts.router)
        live.install(app)
        dashboard.mount(app)
    return app
