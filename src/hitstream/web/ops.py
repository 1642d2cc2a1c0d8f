"""Operations routes: liveness, readiness (each adapter answers) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hitstream.domain.access import Action
from hitstream.errors import AdapterUnavailable
from hitstream.web.auth import UNAUTHORIZED, resolve
from hitstream.web.deps import ServicesDep

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Every adapter this process uses answers",
    responses={503: {"description": "An adapter does not answer (named in checks)"}},
)
async def readyz(services: ServicesDep) -> Response:
    checks: dict[str, Any] = {}
    ready = True
    for name, adapter in services.checks.items():
        try:
            await adapter.check()
        except AdapterUnavailable as exc:
            checks[name] = {"ok": False, "adapter": adapter.name, "error": str(exc)}
            ready = False
        else:
            checks[name] = {"ok": True, "adapter": adapter.name}
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (with HITSTREAM_METRICS_TOKEN set: that token as a bearer, or an "
    "admin)",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **UNAUTHORIZED},
)
async def metrics(services: ServicesDep, request: Request) -> Response:
    gate = services.gate
    if gate is not None and gate.metrics_token:
        caller = await resolve(request)
        gate.require(caller.principal, Action.READ_METRICS)
    registry = services.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
