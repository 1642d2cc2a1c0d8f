"""The seeds' health checks: ``GET /health`` (seed 000) and ``GET /api/health`` (seed 003).

Both ask what ``/readyz`` asks (every part this process's roles need) and answer in the
seed's words: 200 ``healthy``, or 503 ``unhealthy`` naming nothing secret.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from hitstream.errors import AdapterUnavailable
from hitstream.web.deps import ServicesDep

router = APIRouter(tags=["compat"])


async def _down(services: ServicesDep) -> set[str]:
    """The required parts that do not answer."""
    down: set[str] = set()
    for name, adapter in services.checks.items():
        if name in services.optional_checks:
            continue
        try:
            await adapter.check()
        except AdapterUnavailable:
            down.add(name)
    return down


@router.get(
    "/health",
    summary="Seed 000's health check: healthy while every required part answers",
    responses={503: {"description": "A part this process needs does not answer"}},
)
async def health(services: ServicesDep) -> JSONResponse:
    down = await _down(services)
    return JSONResponse(
        {"status": "unhealthy" if down else "healthy", "service": "analytics-producer"},
        status_code=503 if down else 200,
    )


@router.get(
    "/api/health",
    summary="Seed 003's health check: healthy, and whether the store (database) answers",
    responses={503: {"description": "A part this process needs does not answer"}},
)
async def api_health(services: ServicesDep) -> JSONResponse:
    down = await _down(services)
    database = "store" not in services.checks or "store" not in down
    return JSONResponse(
        {
            "status": "unhealthy" if down else "healthy",
            "database": "connected" if database else "disconnected",
        },
        status_code=503 if down else 200,
    )
