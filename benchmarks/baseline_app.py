"""The ceiling for ingest benchmarks: a bare Starlette POST route that reads the body, answers 202.

Served by ``benchmarks.ingest`` with the options ``hitstream serve`` uses (one uvicorn worker,
uvloop, httptools, no access log), so hitstream / baseline is the share of the HTTP stack's
throughput that hitstream keeps after validating, stamping and durably logging each event.
Run it with ``uvicorn --factory benchmarks.baseline_app:create_app``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def events(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"accepted": 1, "bytes": len(body)}, status_code=202)


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ready"})


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/api/v1/events", events, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ]
    )
