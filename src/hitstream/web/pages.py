"""The dashboard's pages: login, logout, first-run setup, login links, the sites page, the
dashboard itself (for a logged-in user) and the read-only shared dashboard.

Forms are plain HTML posted to the server (they work without JavaScript); every value shown
is escaped. The login and setup forms carry a CSRF token that must match a cookie set with the
form (double submit), so a page elsewhere cannot post them; logout needs the login's own CSRF
secret. The login cookie is HttpOnly, SameSite=Lax (following a link into the dashboard keeps
you logged in; nothing state-changing is possible without the CSRF secret) and Secure when the
browser came over HTTPS (directly, or as a trusted proxy says in ``X-Forwarded-Proto``).
"""

from __future__ import annotations

import html
import os
from typing import Any, Final
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hitstream.domain.access import Action, Kind
from hitstream.domain.credentials import make_token, same, well_formed
from hitstream.domain.errors import AccessDenied, NotFound, QueryError, RateLimited
from hitstream.services.accounts import LOGIN_TTL_MS
from hitstream.web import dashboard
from hitstream.web.auth import (
    CSRF_HEADER,
    FORM_COOKIE,
    SESSION_COOKIE,
    UNAUTHORIZED,
    accounts_of,
    gate_of,
    is_https,
    resolve,
)
from hitstream.web.collect import client_ip
from hitstream.web.deps import services_of

router = APIRouter(include_in_schema=True)
_FORM: Final = "application/x-www-form-urlencoded"
MAX_FORM_BYTES: Final = 16_384


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    version = dashboard.asset_version()
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{html.escape(title)} · hitstream</title>"
        f'<link rel="icon" href="{dashboard.ICON}">'
        f'<link rel="stylesheet" href="/static/app.css?v={version}"></head>'
        '<body class="page"><main class="narrow">'
        '<div class="brand page-brand"><span class="logo" aria-hidden="true"></span>hitstream</div>'
        f"{body}</main></body></html>"
    )
    # these pages hold one-time tokens (a setup or login link's, a form's CSRF token): never
    # kept by a cache, never named in a Referer
    headers = {
        **dashboard.PAGE_HEADERS,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(text, status_code=status, headers=headers)


def _error_block(message: str) -> str:
    return f'<p class="form-error" role="alert">{html.escape(message)}</p>' if message else ""


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never ``//host`` or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _set_login(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=LOGIN_TTL_MS // 1000,
        httponly=True,
        samesite="lax",
        secure=is_https(request, services_of(request).trusted_proxies),
        path="/",
    )


def _form_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        FORM_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=is_https(request, services_of(request).trusted_proxies),
        path="/",
    )


async def _form(request: Request) -> dict[str, str]:
    """The posted form (bounded), or {} for anything else."""
    if request.headers.get("content-type", "").split(";")[0].strip() != _FORM:
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _form_ok(request: Request, form: dict[str, str]) -> bool:
    expected = request.cookies.get(FORM_COOKIE, "")
    return bool(expected) and same(form.get("csrf", ""), expected)


def _login_form(
    request: Request, message: str = "", email: str = "", status: int = 200
) -> HTMLResponse:
    target = _safe_next(request.query_params.get("next"))
    body = (
        "<h1>Log in</h1>"
        f"{_error_block(message)}"
        f'<form method="post" action="/login?next={quote(target)}" class="stack" id="login">'
        '<label>Email <input type="email" name="email" autocomplete="username" required '
        f'value="{html.escape(email)}"></label>'
        '<label>Password <input type="password" name="password" '
        'autocomplete="current-password" required></label>'
        '<input type="hidden" name="csrf" value="__CSRF__">'
        '<button type="submit">Log in</button></form>'
        '<p class="muted">First run? Open the setup link that <code>hitstream serve</code> '
        "printed, or add a user with <code>hitstream users add EMAIL --role admin</code>.</p>"
    )
    token = make_token("csrf", os.urandom(32))
    response = _page("Log in", body.replace("__CSRF__", token), status)
    _form_cookie(request, response, token)
    return response


@router.get("/login", include_in_schema=False)
async def login_page(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if cookie and await accounts_of(request).login_of(cookie) is not None:
        # logged in already (a bookmark, the back button): where the form would lead
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_form(request)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    form = await _form(request)
    email = form.get("email", "")
    if not _form_ok(request, form):
        return _login_form(
            request, "The form expired or did not come from this page: try again.", email, 403
        )
    try:
        cookie, _ = await accounts_of(request).login(
            email,
            form.get("password", ""),
            client_ip(request, services_of(request).trusted_proxies),
        )
    except RateLimited as exc:
        refused = _login_form(request, exc.reason, email, 429)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    except AccessDenied as exc:
        return _login_form(request, "Wrong email or password.", email, exc.status)
    response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    _set_login(request, response, cookie)
    response.delete_cookie(FORM_COOKIE, path="/")
    return response


@router.post(
    "/logout",
    summary="Log out of the dashboard (needs the login's CSRF secret)",
    responses=UNAUTHORIZED,
    include_in_schema=False,
)
async def logout(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    accounts = accounts_of(request)
    login = await accounts.login_of(cookie) if cookie else None
    if login is not None:
        form = await _form(request)
        given = request.headers.get(CSRF_HEADER) or form.get("csrf", "")
        if not given or not same(given, login.csrf):
            raise AccessDenied(403, "csrf", "the CSRF token is missing or wrong")
        await accounts.logout(cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _setup_form(request: Request, token: str, message: str = "", status: int = 200) -> HTMLResponse:
    body = (
        "<h1>Welcome to hitstream</h1><p>Create the admin account. You can add sites, users "
        "and API keys once you are in.</p>"
        f"{_error_block(message)}"
        '<form method="post" action="/setup" class="stack" id="setup">'
        '<label>Email <input type="email" name="email" autocomplete="username" required></label>'
        '<label>Password (at least 10 characters) <input type="password" name="password" '
        'autocomplete="new-password" minlength="10" required></label>'
        f'<input type="hidden" name="token" value="{html.escape(token)}">'
        '<input type="hidden" name="csrf" value="__CSRF__">'
        '<button type="submit">Create the admin account</button></form>'
    )
    csrf = make_token("csrf", os.urandom(32))
    response = _page("Set up", body.replace("__CSRF__", csrf), status)
    _form_cookie(request, response, csrf)
    return response


@router.get("/setup", include_in_schema=False)
async def setup_page(request: Request) -> Response:
    if not await accounts_of(request).needs_setup():
        return _page("Set up", '<h1>Already set up</h1><p><a href="/login">Log in</a></p>', 410)
    token = request.query_params.get("token", "")
    if not well_formed(token, "setup"):  # the form would only fail after it was filled in
        return _page(
            "Set up",
            "<h1>This setup link is not whole</h1><p>Open the link the server printed when it "
            "started (<code>First run: create the admin account at ...</code>), all of it; a "
            "new start prints a new one.</p>",
            400,
        )
    return _setup_form(request, token)


@router.post("/setup", include_in_schema=False)
async def setup(request: Request) -> Response:
    form = await _form(request)
    token = form.get("token", "")
    if not _form_ok(request, form):
        return _setup_form(request, token, "The form expired: try again.", 403)
    try:
        cookie, _ = await accounts_of(request).complete_setup(
            token, form.get("email", ""), form.get("password", "")
        )
    except QueryError as exc:
        return _setup_form(request, token, f"{exc.field}: {exc.reason}", 400)
    except AccessDenied as exc:
        return _setup_form(request, token, exc.reason, exc.status)
    response = RedirectResponse("/sites?welcome=1", status_code=303)
    _set_login(request, response, cookie)
    response.delete_cookie(FORM_COOKIE, path="/")
    return response


@router.get("/login/link", include_in_schema=False)
async def login_link(request: Request) -> Response:
    accounts = accounts_of(request)
    made = await accounts.use_login_link(request.query_params.get("token", ""))
    if made is None:
        return _page("Log in", "<h1>This link does not work (any more)</h1>"
                     '<p><a href="/login">Log in</a></p>', 403)  # fmt: skip
    cookie, login = made
    found = await accounts.registry.get_user(login.email)
    first = found[0].sites[0] if found and found[0].sites else ""
    response = RedirectResponse(f"/?site={quote(first)}" if first else "/", status_code=303)
    _set_login(request, response, cookie)
    return response


# -- pages that need a login -----------------------------------------------------------------


async def _logged_in(request: Request) -> bool:
    try:
        caller = await resolve(request)
    except AccessDenied:
        return False
    return caller.via == "cookie"


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


@router.get("/", include_in_schema=False)
async def index(request: Request) -> Response:
    if not await _logged_in(request):
        return _to_login(request)
    return dashboard.page_response()


@router.get("/sites", include_in_schema=False)
async def sites_page(request: Request) -> Response:
    if not await _logged_in(request):
        return _to_login(request)
    return dashboard.page_response("sites.html")


@router.get("/share/{site_id}", include_in_schema=False)
async def share(request: Request, site_id: str) -> Response:
    """The read-only dashboard of a public site, or of any site with a shared link's token."""
    try:
        caller = await resolve(request)
        await gate_of(request).check(caller.principal, Action.READ_STATS, site_id)
    except (AccessDenied, NotFound):
        return _page("Not shared", "<h1>Nothing to see here</h1><p>This dashboard is not "
                     "public, or the link was revoked.</p>", 404)  # fmt: skip
    return dashboard.page_response(share=site_id)


@router.get(
    "/api/v1/session",
    tags=["sites"],
    summary="Who is logged in (the dashboard's login cookie): email, role, sites, CSRF secret",
    responses=UNAUTHORIZED,
)
async def session(request: Request) -> dict[str, Any]:
    caller = await resolve(request)
    if caller.via != "cookie" or caller.principal.kind != Kind.USER:
        raise AccessDenied(401, "authorization", "not logged in to the dashboard")
    who = caller.principal
    services = services_of(request)
    return {
        "email": who.name,
        "role": who.role,
        "sites": sorted(who.sites),
        "csrf": caller.csrf,
        # for the tracker snippets: where events go ("": this address), and whether this
        # process takes them itself (a web role alone does not)
        "events_url": services.events_url,
        "collects": services.collector is not None,
    }
