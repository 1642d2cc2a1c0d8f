"""The seeds' clients' routes: writes with the collector role, reads and ``/ws`` with the web
role, the health checks in every process."""

from __future__ import annotations

from fastapi import FastAPI

from hitstream.web.compat import seed_events, seed_health, seed_reads, seed_ws
from hitstream.web.deps import AppServices


def mount(app: FastAPI, services: AppServices) -> None:
    """Include the seeds' routes this process's roles can serve."""
    app.include_router(seed_health.router)
    if services.collector is not None:
        app.include_router(seed_events.router)
    if services.stats is not None:
        app.include_router(seed_reads.router)
        app.include_router(seed_ws.router)
