"""Who is calling, for every route: one dependency resolves the caller, routes ask the policy.

A request identifies itself with ``Authorization: Bearer KEY`` (an API key, or the metrics
token), the dashboard's login cookie, or a shared link's ``auth`` query parameter; with none
of them it is anonymous. The routes then ask ``Gatekeeper.check`` (``hitstream.services
.access``) for their action: 401 without a credential, 403 with one that does not reach.

State-changing requests authenticated by the login cookie must carry the login's CSRF secret
(``X-CSRF-Token``; the dashboard reads it from ``GET /api/v1/session``, which no other site
can read): a form or script on another site can make the browser send the cookie, never the
secret. Keys in headers need no such proof (browsers never send them by themselves).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Annotated, Any, Final

from fastapi import Depends
from starlette.requests import HTTPConnection

from hitstream.domain.credentials import same
from hitstream.domain.errors import AccessDenied
from hitstream.services.access import Caller, Credentials, Gatekeeper
from hitstream.services.accounts import Accounts
from hitstream.web.deps import Network, services_of
from hitstream.web.openapi import ERROR_REF

SESSION_COOKIE: Final = "hitstream_session"
FORM_COOKIE: Final = "hitstream_form"
"""Holds the CSRF token of the login and setup forms (double submit: cookie and field)."""
CSRF_HEADER: Final = "x-csrf-token"
_UNSAFE: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def credentials_of(conn: HTTPConnection) -> Credentials:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    bearer = value.strip() if scheme.lower() == "bearer" else ""
    if header and not bearer:
        raise AccessDenied(401, "authorization", "must be 'Bearer <key>'")
    return Credentials(
        bearer=bearer,
        cookie=conn.cookies.get(SESSION_COOKIE, ""),
        share=conn.query_params.get("auth", ""),
    )


def gate_of(conn: HTTPConnection) -> Gatekeeper:
    gate = services_of(conn).gate
    if gate is None:
        raise RuntimeError("this process built no gatekeeper")
    return gate


def accounts_of(conn: HTTPConnection) -> Accounts:
    accounts = services_of(conn).accounts
    if accounts is None:
        raise RuntimeError("this process built no accounts service")
    return accounts


async def resolve(conn: HTTPConnection) -> Caller:
    return await gate_of(conn).resolve(credentials_of(conn))


async def _caller(conn: HTTPConnection) -> Caller:
    """The caller; for a state-changing request made with the login cookie, the CSRF
    secret must come along."""
    caller = await resolve(conn)
    method = conn.scope.get("method", "GET")
    if caller.via == "cookie" and method in _UNSAFE:
        given = conn.headers.get(CSRF_HEADER, "")
        if not given or not same(given, caller.csrf):
            raise AccessDenied(403, "csrf", "the X-CSRF-Token header is missing or wrong")
    return caller


async def _gate(conn: HTTPConnection) -> Gatekeeper:
    return gate_of(conn)


async def _accounts(conn: HTTPConnection) -> Accounts:
    return accounts_of(conn)


CallerDep = Annotated[Caller, Depends(_caller)]
GateDep = Annotated[Gatekeeper, Depends(_gate)]
AccountsDep = Annotated[Accounts, Depends(_accounts)]


def is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def is_https(conn: HTTPConnection, trusted: Sequence[Network]) -> bool:
    """Whether the browser reached us over HTTPS: directly, or through a trusted proxy that
    says so in ``X-Forwarded-Proto`` (nobody else is believed)."""
    if conn.url.scheme in ("https", "wss"):
        return True
    peer = conn.client.host if conn.client else ""
    if trusted and is_trusted(peer, trusted):
        proto = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


_JSON_ERROR: Final = {"application/json": {"schema": ERROR_REF}}
UNAUTHORIZED: Final[dict[int | str, dict[str, Any]]] = {
    401: {
        "description": "No credential, or an unknown one: send `Authorization: Bearer KEY`, "
        "the dashboard's login cookie, or a shared link's `auth` token",
        "content": _JSON_ERROR,
    },
    403: {
        "description": "The credential may not do this (another site, a narrower scope)",
        "content": _JSON_ERROR,
    },
}
SITE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    **UNAUTHORIZED,
    404: {"description": "The site is not registered", "content": _JSON_ERROR},
}
