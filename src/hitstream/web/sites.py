"""The sites API: sites, their API keys and shared links, users, and forgetting a user.

Every operation asks the access policy (``web/auth.py``): reading a site's settings takes
what reading its stats takes; changing or deleting it, forgetting one of its users and
managing its shared links take ``manage_site`` (an admin, or an admin key of the site);
its keys take ``manage_keys``; adding sites and managing users take an admin. Keys and link
tokens are shown once, in the answer that creates them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from hitstream.domain.access import Action
from hitstream.domain.errors import AccessDenied, Conflict, NotFound, QueryError
from hitstream.domain.sites import (
    changed_site,
    check_password,
    check_role,
    check_site_id,
    check_unlike,
    new_site,
)
from hitstream.services.access import Gatekeeper
from hitstream.web.auth import SITE_RESPONSES, UNAUTHORIZED, AccountsDep, CallerDep, GateDep
from hitstream.web.deps import StatsDep
from hitstream.web.openapi import ERROR_REF

router = APIRouter(prefix="/api/v1", tags=["sites"])
SitePath = Annotated[
    str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Exists already", "content": {"application/json": {"schema": ERROR_REF}}}
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteSettings(_Strict):
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Berlin"])
    allowed_hosts: list[str] | None = Field(default=None, max_length=50)
    retention_days: int | None = Field(default=None, ge=0, le=36_500)
    public: StrictBool | None = None
    settings: dict[str, Any] | None = None
    umami_website_id: str | None = Field(
        default=None,
        max_length=36,
        description="The `website` id Umami's tracker sends for this site (a UUID); "
        "null or '' clears it",
        examples=["4f9a2c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"],
    )


class NewSite(SiteSettings):
    site_id: str = Field(min_length=1, max_length=100, examples=["example.com"])


class NewKey(_Strict):
    scope: str = Field(json_schema_extra={"enum": ["read", "write", "admin"]})
    name: str = Field(default="", max_length=100)


class NewLink(_Strict):
    name: str = Field(default="", max_length=100)


class NewUser(_Strict):
    email: str = Field(min_length=3, max_length=320)
    role: str = Field(json_schema_extra={"enum": ["admin", "viewer"]})
    sites: list[str] = Field(default_factory=list, max_length=1000)
    password: str = Field(min_length=10, max_length=1024)


class UserChange(_Strict):
    role: str | None = Field(default=None, json_schema_extra={"enum": ["admin", "viewer"]})
    sites: list[str] | None = Field(default=None, max_length=1000)
    password: str | None = Field(default=None, min_length=10, max_length=1024)


async def _site(gate: Gatekeeper, caller: Any, action: Action, site_id: str) -> Any:
    site = await gate.check(caller.principal, action, site_id)
    assert site is not None  # check raises NotFound for an unregistered site
    return site


@router.get("/sites", summary="The sites this credential can read", responses=UNAUTHORIZED)
async def list_sites(caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    gate.require(caller.principal, Action.LIST_SITES)
    return {"sites": [s.as_dict() for s in await gate.visible_sites(caller.principal)]}


@router.post(
    "/sites", status_code=201, summary="Register a site", responses={**UNAUTHORIZED, **_CONFLICT}
)
async def add_site(body: NewSite, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    gate.require(caller.principal, Action.ADD_SITE)
    # the moment itself (the stats' "now" is rounded up to the minute: a created_at ahead)
    site = new_site(body.model_dump(exclude_unset=True), int(time.time() * 1000))
    check_unlike(site.site_id, [s.site_id for s in await gate.registry.registered_sites()])
    await gate.registry.add_site(site)
    await gate.refresh(force=True)
    return site.as_dict()


@router.get("/sites/{site_id}", summary="A site's settings", responses=SITE_RESPONSES)
async def get_site(site_id: SitePath, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    site = await _site(gate, caller, Action.READ_STATS, site_id)
    out: dict[str, Any] = site.as_dict()
    return out


@router.patch(
    "/sites/{site_id}",
    summary="Change a site's settings",
    responses={**SITE_RESPONSES, **_CONFLICT},
)
async def update_site(
    site_id: SitePath, body: SiteSettings, caller: CallerDep, gate: GateDep
) -> dict[str, Any]:
    site = await _site(gate, caller, Action.MANAGE_SITE, site_id)
    changed = changed_site(site, body.model_dump(exclude_unset=True))
    await gate.registry.update_site(changed)
    await gate.refresh(force=True)
    out: dict[str, Any] = changed.as_dict()
    return out


@router.delete(
    "/sites/{site_id}",
    summary="Remove a site and delete all its data (events, visits, rollups, keys, links)",
    responses=SITE_RESPONSES,
)
async def remove_site(site_id: SitePath, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    await _site(gate, caller, Action.MANAGE_SITE, site_id)
    await gate.registry.remove_site(site_id)
    await gate.refresh(force=True)
    return {"site_id": site_id, "removed": True}


@router.delete(
    "/sites/{site_id}/users/{user_id}",
    summary="Forget an identified user: delete every stored event with this user_id",
    responses=SITE_RESPONSES,
)
async def forget_user(
    site_id: SitePath,
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    caller: CallerDep,
    gate: GateDep,
    stats: StatsDep,
) -> dict[str, Any]:
    await _site(gate, caller, Action.MANAGE_SITE, site_id)
    removed = await stats.store.forget_user(site_id, user_id, int(time.time() * 1000))
    return {"site_id": site_id, "user_id": user_id, "events_deleted": removed}


# -- keys ---------------------------------------------------------------------------------


@router.get("/sites/{site_id}/keys", summary="A site's API keys", responses=SITE_RESPONSES)
async def site_keys(site_id: SitePath, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    await _site(gate, caller, Action.MANAGE_KEYS, site_id)
    return {"keys": [k.as_dict() for k in await gate.registry.keys(site_id)]}


@router.post(
    "/sites/{site_id}/keys",
    status_code=201,
    summary="Create an API key (shown once: only its hash is kept)",
    responses=SITE_RESPONSES,
)
async def create_key(
    site_id: SitePath, body: NewKey, caller: CallerDep, gate: GateDep, accounts: AccountsDep
) -> dict[str, Any]:
    await _site(gate, caller, Action.MANAGE_KEYS, site_id)
    token, key = await accounts.create_key(site_id, body.scope, body.name)
    return {**key.as_dict(), "key": token}


@router.delete("/keys/{key_id}", summary="Revoke an API key", responses=SITE_RESPONSES)
async def revoke_key(
    key_id: Annotated[str, Path(min_length=1, max_length=64)], caller: CallerDep, gate: GateDep
) -> dict[str, Any]:
    key = next((k for k in await gate.registry.keys() if k.key_id == key_id), None)
    if key is None:
        if not caller.principal.has_credential:
            gate.require(caller.principal, Action.MANAGE_USERS)  # 401: who is asking?
        if not caller.principal.is_admin:  # only an admin learns it is absent
            raise AccessDenied(403, "key_id", "is not a key of a site this credential manages")
        raise NotFound("key_id", "no such key")
    if key.site_id == "*":
        gate.require(caller.principal, Action.MANAGE_USERS)
    else:
        await gate.check(caller.principal, Action.MANAGE_KEYS, key.site_id)
    await gate.registry.revoke_key(key_id)
    await gate.refresh(force=True)
    return {**key.as_dict(), "revoked": True}


# -- shared links -------------------------------------------------------------------------


@router.get("/sites/{site_id}/links", summary="A site's shared links", responses=SITE_RESPONSES)
async def site_links(site_id: SitePath, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    await _site(gate, caller, Action.MANAGE_SITE, site_id)
    return {"links": [v.as_dict() for v in await gate.registry.links(site_id)]}


@router.post(
    "/sites/{site_id}/links",
    status_code=201,
    summary="Create a shared link: a read-only dashboard at /share/{site_id}?auth=TOKEN",
    responses=SITE_RESPONSES,
)
async def create_link(
    site_id: SitePath, body: NewLink, caller: CallerDep, gate: GateDep, accounts: AccountsDep
) -> dict[str, Any]:
    await _site(gate, caller, Action.MANAGE_SITE, site_id)
    token, link = await accounts.create_link(site_id, body.name)
    return {**link.as_dict(), "token": token, "path": f"/share/{site_id}?auth={token}"}


@router.delete(
    "/sites/{site_id}/links/{link_id}", summary="Revoke a shared link", responses=SITE_RESPONSES
)
async def remove_link(
    site_id: SitePath,
    link_id: Annotated[str, Path(min_length=1, max_length=64)],
    caller: CallerDep,
    gate: GateDep,
) -> dict[str, Any]:
    await _site(gate, caller, Action.MANAGE_SITE, site_id)
    if not any(v.link_id == link_id for v in await gate.registry.links(site_id)):
        raise NotFound("link_id", "no such link for this site")
    await gate.registry.remove_link(link_id)
    return {"link_id": link_id, "removed": True}


# -- users --------------------------------------------------------------------------------


@router.get("/users", summary="Dashboard users", responses=UNAUTHORIZED)
async def list_users(caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    gate.require(caller.principal, Action.MANAGE_USERS)
    return {"users": [u.as_dict() for u in await gate.registry.users()]}


@router.post(
    "/users",
    status_code=201,
    summary="Add a dashboard user",
    responses={**UNAUTHORIZED, **_CONFLICT},
)
async def add_user(
    body: NewUser, caller: CallerDep, gate: GateDep, accounts: AccountsDep
) -> dict[str, Any]:
    gate.require(caller.principal, Action.MANAGE_USERS)
    user = await accounts.add_user(body.email, body.role, body.sites, body.password)
    await gate.refresh(force=True)
    return user.as_dict()


UserPath = Annotated[str, Path(min_length=3, max_length=320)]


@router.patch(
    "/users/{email}",
    summary="Change a user's role, sites or password",
    responses={**UNAUTHORIZED, 404: SITE_RESPONSES[404]},
)
async def update_user(
    email: UserPath, body: UserChange, caller: CallerDep, gate: GateDep, accounts: AccountsDep
) -> dict[str, Any]:
    gate.require(caller.principal, Action.MANAGE_USERS)
    found = await gate.registry.get_user(email.lower())
    if found is None:
        raise NotFound("email", "no such user")
    user = found[0]
    if body.password is not None:  # checked first: a refused password changes nothing else
        check_password(body.password)
    if body.role is not None:
        user = replace(user, role=check_role(body.role))
        if found[0].role == "admin" and user.role != "admin":
            if caller.principal.name == user.email:
                raise QueryError("role", "you cannot take your own admin role")
            await _not_the_last_admin(gate, user.email, "role", "keeps its role")
    if body.sites is not None:
        user = replace(user, sites=tuple(check_site_id(s, "sites") for s in body.sites))
        await accounts.check_sites(user.sites)
    await gate.registry.update_user(user)
    if body.password is not None:
        await accounts.set_password(user.email, body.password)
    await gate.refresh(force=True)
    out: dict[str, Any] = user.as_dict()
    return out


async def _not_the_last_admin(gate: Gatekeeper, email: str, field: str, what: str) -> None:
    """``Conflict`` naming ``field`` when ``email`` is the only admin user: without one the
    dashboard has nobody to manage it (and the first-run setup would open again)."""
    if not any(u.role == "admin" and u.email != email for u in await gate.registry.users()):
        raise Conflict(field, f"the last admin {what}: make another user admin first")


@router.delete(
    "/users/{email}", summary="Remove a user", responses={**UNAUTHORIZED, 404: SITE_RESPONSES[404]}
)
async def remove_user(email: UserPath, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    gate.require(caller.principal, Action.MANAGE_USERS)
    if caller.principal.name == email.lower():
        raise QueryError("email", "you cannot remove your own account")
    found = await gate.registry.get_user(email.lower())
    if found is not None and found[0].role == "admin":
        await _not_the_last_admin(gate, email.lower(), "email", "cannot be removed")
    if not await gate.registry.remove_user(email.lower()):
        raise NotFound("email", "no such user")
    return {"email": email.lower(), "removed": True}
