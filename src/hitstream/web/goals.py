"""The goals and funnels API: a site's goals and saved funnels, and funnel stats.

Access follows the site settings: whoever reads the site's stats lists its goals and funnels
and reads funnel stats; changing them takes ``manage_site`` (an admin, or an admin key of the
site). Names are unique per site (409 on a taken one); bad definitions are 400s naming the
field (``page``, ``event_name``, ``props``, ``steps``, ``step``, ``window``). A saved funnel's
goal steps name goals of the site (a 400 naming ``steps`` otherwise), and a goal that a saved
funnel uses is not removed (a 409 naming the funnels): a saved funnel always runs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from hitstream.domain.access import Action
from hitstream.domain.errors import Conflict, NotFound, QueryError
from hitstream.domain.funnels import (
    MAX_FUNNELS,
    MAX_STEPS,
    Funnel,
    check_window,
    new_funnel,
    parse_steps,
)
from hitstream.domain.goals import GOAL_PROPERTY, MAX_GOALS, check_new_name, named, new_goal
from hitstream.domain.measures import prop_text
from hitstream.web.auth import SITE_RESPONSES, CallerDep, GateDep
from hitstream.web.deps import StatsDep
from hitstream.web.openapi import ERROR_REF
from hitstream.web.params import known_parameters
from hitstream.web.sites import SitePath
from hitstream.web.stats import (
    MAX_FILTERS_LENGTH,
    Filters,
    From,
    Period,
    SiteId,
    To,
    Tz,
    _query,
    _readable,
)

router = APIRouter(
    prefix="/api/v1", tags=["goals and funnels"], dependencies=[Depends(known_parameters)]
)
NamePath = Annotated[str, Path(min_length=1, max_length=100)]
_CHANGE: dict[int | str, dict[str, Any]] = {
    **SITE_RESPONSES,
    400: {
        "description": "A bad definition",
        "content": {"application/json": {"schema": ERROR_REF}},
    },
    409: {
        "description": "The name is taken",
        "content": {"application/json": {"schema": ERROR_REF}},
    },
}


class NewGoal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200, examples=["Signup"])
    event_name: str | None = Field(default=None, max_length=200, examples=["signup"])
    page: str | None = Field(
        default=None,
        max_length=600,
        description="Path pattern: * any characters but /, ** any characters",
        examples=["/pricing*"],
    )
    props: dict[str, StrictBool | StrictInt | StrictFloat | StrictStr] | None = Field(
        default=None,
        description="Custom-event goals only: the event's props must have these values "
        '(a number or a boolean as events send them: 3 matches 3 and "3")',
    )


class NewFunnel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200, examples=["Signup flow"])
    steps: list[str] = Field(
        max_length=MAX_STEPS * 2, examples=[["page==/", "page==/pricing", "goal==Signup"]]
    )
    window: StrictInt | None = Field(default=None, description="Minutes from first to last step")


# -- goals --------------------------------------------------------------------------------


@router.get("/sites/{site_id}/goals", summary="A site's goals", responses=SITE_RESPONSES)
async def list_goals(site_id: SitePath, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    await gate.check(caller.principal, Action.READ_STATS, site_id)
    return {"goals": [g.as_dict() for g in await gate.registry.goals(site_id)]}


@router.post(
    "/sites/{site_id}/goals",
    status_code=201,
    summary="Add a pageview goal (page pattern) or a custom-event goal (event_name, props)",
    responses=_CHANGE,
)
async def add_goal(
    site_id: SitePath, body: NewGoal, caller: CallerDep, gate: GateDep
) -> dict[str, Any]:
    await gate.check(caller.principal, Action.MANAGE_SITE, site_id)
    fields = body.model_dump(exclude_none=True)
    if "props" in fields:  # compared as text, as every store keeps a prop's value
        fields["props"] = {key: prop_text(value) for key, value in fields["props"].items()}
    goal = new_goal(fields)
    existing = await gate.registry.goals(site_id)
    check_new_name(goal.name, [g.name for g in existing])
    if len(existing) >= MAX_GOALS:
        raise QueryError("name", f"a site has at most {MAX_GOALS} goals")
    await gate.registry.add_goal(site_id, goal)
    return goal.as_dict()


@router.delete("/sites/{site_id}/goals/{name}", summary="Remove a goal", responses=SITE_RESPONSES)
async def remove_goal(
    site_id: SitePath, name: NamePath, caller: CallerDep, gate: GateDep
) -> dict[str, Any]:
    await gate.check(caller.principal, Action.MANAGE_SITE, site_id)
    using = [f.name for f in await gate.registry.funnels(site_id) if name in _goals_of(f)]
    if using:
        raise Conflict(
            "name",
            f"goal {name!r} is a step of the saved funnel(s) {', '.join(map(repr, using))}: "
            "remove those funnels first",
        )
    if not await gate.registry.remove_goal(site_id, name):
        raise NotFound("name", f"{site_id} has no goal named {name!r}")
    return {"site_id": site_id, "name": name, "removed": True}


# -- saved funnels ------------------------------------------------------------------------


def _goals_of(funnel: Funnel) -> list[str]:
    """The goal names a funnel's steps name (``goal==Signup|Trial``)."""
    steps = parse_steps(funnel.steps, "steps")
    return [name for step in steps if step.property == GOAL_PROPERTY for name in step.values]


@router.get("/sites/{site_id}/funnels", summary="A site's saved funnels", responses=SITE_RESPONSES)
async def list_funnels(site_id: SitePath, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    await gate.check(caller.principal, Action.READ_STATS, site_id)
    return {"funnels": [f.as_dict() for f in await gate.registry.funnels(site_id)]}


@router.post(
    "/sites/{site_id}/funnels",
    status_code=201,
    summary="Save a funnel: 2 to 8 steps (filter clauses), optionally a window in minutes",
    responses=_CHANGE,
)
async def add_funnel(
    site_id: SitePath, body: NewFunnel, caller: CallerDep, gate: GateDep
) -> dict[str, Any]:
    await gate.check(caller.principal, Action.MANAGE_SITE, site_id)
    funnel = new_funnel(body.model_dump())
    wanted = _goals_of(funnel)
    if wanted:  # a 400 naming steps when one is not a goal of the site
        named(await gate.registry.goals(site_id), wanted, "steps")
    saved = await gate.registry.funnels(site_id)
    check_new_name(funnel.name, [f.name for f in saved], "saved funnel")
    if len(saved) >= MAX_FUNNELS:
        raise QueryError("name", f"a site has at most {MAX_FUNNELS} funnels")
    await gate.registry.add_funnel(site_id, funnel)
    return funnel.as_dict()


@router.delete(
    "/sites/{site_id}/funnels/{name}", summary="Remove a saved funnel", responses=SITE_RESPONSES
)
async def remove_funnel(
    site_id: SitePath, name: NamePath, caller: CallerDep, gate: GateDep
) -> dict[str, Any]:
    await gate.check(caller.principal, Action.MANAGE_SITE, site_id)
    if not await gate.registry.remove_funnel(site_id, name):
        raise NotFound("name", f"{site_id} has no funnel named {name!r}")
    return {"site_id": site_id, "name": name, "removed": True}


# -- funnel stats -------------------------------------------------------------------------


@router.get(
    "/stats/funnel",
    summary="Visitors, conversion from the first step (%) and drop-off per funnel step",
    responses={
        **SITE_RESPONSES,
        400: {"description": "Bad steps", "content": {"application/json": {"schema": ERROR_REF}}},
    },
)
async def funnel(
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    site_id: SiteId,
    step: Annotated[
        list[str] | None,
        Query(
            description="One per step, in order (2 to 8): a filter clause such as page==/ or "
            "goal==Signup",
            max_length=MAX_FILTERS_LENGTH,
        ),
    ] = None,
    funnel: Annotated[
        str | None, Query(min_length=1, max_length=100, description="A saved funnel's name")
    ] = None,
    window: Annotated[
        int | None, Query(description="Minutes from the first step to the last (1 to 10080)")
    ] = None,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    filters: Filters = None,
    tz: Tz = None,
) -> dict[str, Any]:
    tz = await _readable(caller, gate, site_id, tz)
    if funnel is not None:
        if step:
            raise QueryError("step", "give either step parameters or funnel, not both")
        saved = {f.name: f for f in await gate.registry.funnels(site_id)}
        if funnel not in saved:
            raise QueryError("funnel", f"{site_id} has no saved funnel named {funnel!r}")
        raw_steps, field = list(saved[funnel].steps), "funnel"
        window = saved[funnel].window if window is None else window
    else:
        raw_steps, field = step or [], "step"
    steps = parse_steps(raw_steps, field)
    query = _query(
        stats,
        site_id=site_id,
        period=period,
        date_from=date_from,
        date_to=to,
        metrics="visitors",
        filters=filters,
        tz=tz,
    )
    body = await stats.funnel(query, steps, check_window(window), field)
    if funnel is not None:
        body["funnel"] = funnel
    return body
