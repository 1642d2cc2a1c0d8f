"""Operations routes: liveness, readiness (each adapter answers) and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hitstream.domain.access import Action
from hitstream.errors import AccessDenied, AdapterUnavailable
from hitstream.metrics import merge_exposition
from hitstream.web.auth import UNAUTHORIZED, credentials_of, resolve
from hitstream.web.compat import seed_reads
from hitstream.web.deps import ServicesDep
from hitstream.web.openapi import ERROR_REF

router = APIRouter(tags=["ops"])


# HEAD too (below): load balancers and uptime checkers probe with it (it was a 405)
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get(
    "/readyz",
    summary="Every part this process's roles need answers",
    responses={503: {"description": "A part the roles need does not answer (named in checks)"}},
)
async def readyz(services: ServicesDep, request: Request) -> Response:
    """503 while a part the roles need is down (the event log, the store, a data disk that
    refuses writes), naming it; 200 ``degraded`` while only an optional one is (the fan-out:
    live updates pause; the cache: answers come from the store), so a load balancer keeps
    sending traffic that can still be served.

    Open to anyone, so a failing part's own error text (a database's host and user, a data
    folder's path) goes only to an admin credential; others read ``unavailable``."""
    if not services.startup.done:  # the parts are not started yet: nothing to ask
        waiting = services.startup.waiting_for
        return JSONResponse({"status": "starting", "waiting_for": waiting}, status_code=503)
    checks: dict[str, Any] = {}
    failures: dict[str, str] = {}
    ready = all_ok = True
    for name, adapter in services.checks.items():
        required = name not in services.optional_checks
        try:
            await adapter.check()
        except AdapterUnavailable as exc:
            checks[name] = {"ok": False, "adapter": adapter.name, "error": "unavailable"}
            failures[name] = str(exc)
            ready = ready and not required
            all_ok = False
        else:
            checks[name] = {"ok": True, "adapter": adapter.name}
        checks[name]["required"] = required
    if failures and await _is_admin(request, services):
        for name, error in failures.items():
            checks[name]["error"] = error
    status = "ready" if all_ok else "degraded" if ready else "unavailable"
    return JSONResponse({"status": status, "checks": checks}, status_code=200 if ready else 503)


async def _is_admin(request: Request, services: ServicesDep) -> bool:
    """Whether the request carries an admin's credential (a wrong one, or a store that cannot
    tell while it is down, is no admin)."""
    if services.gate is None:
        return False
    try:
        given = credentials_of(request)
        if not (given.bearer or given.cookie or given.share):
            return False
        caller = await resolve(request)
    except (AccessDenied, AdapterUnavailable):
        return False
    return caller.principal.is_admin


@router.get(
    "/metrics",
    summary="Prometheus metrics (with HITSTREAM_METRICS_TOKEN set: that token as a bearer, or an "
    "admin); seed 004's JSON metrics with ?format=json or Accept: application/json",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {
                    "schema": {"type": "object"},
                    "example": {
                        "active_users": 15,
                        "events_per_min": 42.5,
                        "avg_duration": 8.2,
                        "top_elements": [{"element": "video_player", "count": 120}],
                    },
                },
            }
        },
        **UNAUTHORIZED,
        403: {
            "description": "JSON: the credential may not read the site",
            "content": {"application/json": {"schema": ERROR_REF}},
        },
        404: {
            "description": "JSON: the configured site is not registered",
            "content": {"application/json": {"schema": ERROR_REF}},
        },
    },
)
async def metrics(
    services: ServicesDep,
    request: Request,
    format: Annotated[
        str | None,
        Query(max_length=16, description="json: seed 004's JSON metrics of a site"),
    ] = None,
    period: Annotated[
        str | None, Query(max_length=16, description="JSON: the window of avg_duration")
    ] = None,
    site_id: Annotated[
        str | None, Query(max_length=100, description="JSON: the site (default: configured)")
    ] = None,
) -> Response:
    del format, period, site_id  # documented here; seed_reads reads them from the request
    if seed_reads.wants_json(request):  # read access to the site, not the metrics token
        return JSONResponse(await seed_reads.metrics_json(request))
    gate = services.gate
    if gate is not None and gate.metrics_token:
        caller = await resolve(request)
        gate.require(caller.principal, Action.READ_METRICS)
    body = generate_latest(services.metrics.registry)
    if services.peer_metrics is not None:  # serve's processor process: one unit, one page
        body = merge_exposition(body.decode(), await services.peer_metrics()).encode()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
