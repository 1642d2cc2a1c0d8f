"""The alerts API: the rules that apply to a site, what fires now, and recent transitions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from hitstream.domain.access import Action
from hitstream.web.auth import SITE_RESPONSES, CallerDep, GateDep
from hitstream.web.deps import AlertingDep
from hitstream.web.params import known_parameters

router = APIRouter(prefix="/api/v1", tags=["alerts"], dependencies=[Depends(known_parameters)])


@router.get(
    "/alerts",
    summary="Alert rules, alerts pending or firing now, recent transitions",
    responses=SITE_RESPONSES,
)
async def alerts(
    alerting: AlertingDep,
    caller: CallerDep,
    gate: GateDep,
    site_id: Annotated[
        str | None, Query(min_length=1, max_length=100, description="One site (all if absent)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Recent transitions to list")] = 50,
) -> dict[str, Any]:
    """``enabled`` is false when no rules are set. ``evaluated_here`` is false in a web
    process of a scale-out deployment: the processors evaluate, and the leader's last round
    (every ``HITSTREAM_ALERT_INTERVAL_S``) is what ``active`` and ``recent`` show."""
    if site_id is None:
        gate.require(caller.principal, Action.READ_ALL)
    else:
        await gate.check(caller.principal, Action.READ_STATS, site_id)
    if alerting is None:
        return {
            "enabled": False,
            "evaluated_here": False,
            "site_id": site_id,
            "rules": [],
            "active": [],
            "recent": [],
        }
    return {
        "enabled": True,
        "evaluated_here": alerting.evaluated_here,
        "site_id": site_id,
        "rules": [rule.as_dict() for rule in alerting.rules_for(site_id)],
        "active": alerting.active(site_id),
        "recent": alerting.recent(site_id, limit),
    }
