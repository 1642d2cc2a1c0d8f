"""The gatekeeper: who is calling (a ``Principal``), what sites exist, and the one check.

Every read path and every ingestion asks here. The sites and the credentials come from the
registry, through in-memory copies that are re-read when ``registry_version`` moves; the
version itself is asked at most once per ``refresh_s`` (1 s), so a site added through any
process is accepted by every collector within about a second, a revoked key stops working
within a second, and the hot path costs a dictionary lookup. Secrets are looked up by their
SHA-256 (``domain.credentials``) and never logged; the metrics token, the one secret compared
as such, is compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from hitstream.domain import access
from hitstream.domain.access import ANONYMOUS, Action, Principal
from hitstream.domain.credentials import same, token_hash
from hitstream.domain.errors import AccessDenied, NotFound
from hitstream.domain.sites import Site
from hitstream.errors import AdapterUnavailable
from hitstream.stores.registry import Registry

log = logging.getLogger(__name__)

TOUCH_EVERY_MS: Final = 60_000
"""A key's ``last_used_at`` is written at most this often (not on every request)."""
MAX_CACHED: Final = 10_000


@dataclass(frozen=True, slots=True)
class Caller:
    """A resolved request: who, how (``bearer``, ``cookie``, ``share``, ``metrics`` or
    ``none``), and for a login cookie its CSRF secret (state-changing requests must echo it)."""

    principal: Principal
    via: str = "none"
    csrf: str = ""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request brought: a bearer key, a login cookie, a shared-link token."""

    bearer: str = ""
    cookie: str = ""
    share: str = ""


def _wall_ms() -> int:
    return int(time.time() * 1000)


RECHECK_S: Final = 0.1
"""How soon an unknown site may make the gatekeeper ask the registry again."""


class Gatekeeper:
    def __init__(
        self,
        registry: Registry,
        *,
        metrics_token: str = "",
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self.registry = registry
        self.metrics_token = metrics_token
        self.refresh_s = refresh_s
        self._clock = clock
        self._wall_ms = wall_ms
        self._version = -1
        self._checked = -float("inf")
        self._sites: dict[str, Site] = {}
        self._umami: dict[str, Site] = {}
        self._folded: dict[str, Site] = {}
        """Lower-cased site id -> the site (no two differ by case only)."""
        """Umami website id -> its site (Umami's tracker names a site by it)."""
        self._forgotten: dict[tuple[str, str], int] = {}
        self._keys: dict[str, Principal | None] = {}
        """token hash -> principal (or None: no such key), for this registry version."""
        self._touched: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._warned = -float("inf")

    # -- the registry's copy -------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the sites if the registry moved (asked at most every ``refresh_s``)."""
        now = self._clock()
        if not force and now - self._checked < self.refresh_s:
            return
        async with self._lock:
            if not force and now - self._checked < self.refresh_s:
                return
            try:
                version = await self.registry.registry_version()
                if version != self._version or force:
                    sites = await self.registry.registered_sites()
                    self._sites = {site.site_id: site for site in sites}
                    self._umami = {s.umami_website_id: s for s in sites if s.umami_website_id}
                    self._folded = {site.site_id.lower(): site for site in sites}
                    self._forgotten = await self.registry.forgotten()
                    self._keys.clear()
                    self._version = version
            except AdapterUnavailable as exc:
                if self._version < 0:
                    raise  # never read: nothing to go on
                # the store is down: collectors go on with the copy they have (a site added
                # meanwhile waits for the store), and ask again in a second
                if now - self._warned > 60:
                    self._warned = now
                    log.warning("site registry unavailable, using the last copy: %s", exc)
            self._checked = self._clock()

    async def sites(self) -> Mapping[str, Site]:
        await self.refresh()
        return self._sites

    async def umami_site(self, website_id: str) -> Site | None:
        """The site whose ``umami_website_id`` this is (compared lowercased), if any."""
        await self.refresh()
        return self._umami.get(website_id.strip().lower())

    async def site_named(self, site_id: str) -> Site | None:
        """The registered site ``site_id`` names, whatever its case (a domain is one site:
        the tracker's default sends the lower-cased host)."""
        await self.refresh()
        return self._sites.get(site_id) or self._folded.get(site_id.lower())

    async def forgotten_users(self) -> Mapping[tuple[str, str], int]:
        """(site, visitor hash) -> when that identified user was forgotten."""
        await self.refresh()
        return self._forgotten

    async def site(self, site_id: str) -> Site | None:
        found = (await self.sites()).get(site_id)
        if found is None and self._clock() - self._checked >= RECHECK_S:
            # added a moment ago through another process? ask the registry's version now
            # (a cheap one-row read, at most every RECHECK_S however many strangers ask)
            self._checked = -float("inf")
            found = (await self.sites()).get(site_id)
        return found

    # -- principals ----------------------------------------------------------------------

    async def key_principal(self, token: str) -> Principal | None:
        await self.refresh()
        hashed = token_hash(token)
        if hashed in self._keys:
            return self._keys[hashed]
        key = await self.registry.key_by_hash(hashed)
        found = None if key is None else access.key(key.key_id, key.site_id, key.scope)
        if len(self._keys) >= MAX_CACHED:
            self._keys.clear()
        self._keys[hashed] = found
        if key is not None:
            now = self._wall_ms()
            if now - self._touched.get(key.key_id, 0) >= TOUCH_EVERY_MS:
                self._touched[key.key_id] = now
                with contextlib.suppress(AdapterUnavailable):  # a use, best effort
                    await self.registry.touch_key(key.key_id, now)
        return found

    async def resolve(self, given: Credentials) -> Caller:
        """Who is calling. A bearer credential or a shared-link token that is present but
        unknown (a wrong or revoked key) raises ``AccessDenied`` (401): it was meant to
        identify someone. An expired login cookie is just no login."""
        if given.bearer:
            if self.metrics_token and same(given.bearer, self.metrics_token):
                return Caller(access.metrics_reader(), "metrics")
            found = await self.key_principal(given.bearer)
            if found is None:
                raise AccessDenied(401, "authorization", "unknown or revoked key")
            return Caller(found, "bearer")
        if given.cookie:
            caller = await self.user_of_cookie(given.cookie)
            if caller is not None:
                return caller
        if given.share:
            link = await self.registry.link_by_hash(token_hash(given.share))
            if link is None:
                raise AccessDenied(401, "auth", "unknown or revoked shared link")
            return Caller(access.share(link.link_id, link.site_id), "share")
        return Caller(ANONYMOUS)

    async def user_of_cookie(self, cookie: str) -> Caller | None:
        login = await self.registry.login_by_hash(token_hash(cookie), self._wall_ms())
        if login is None:
            return None
        found = await self.registry.get_user(login.email)
        if found is None:
            return None
        user = found[0]
        return Caller(access.user(user.email, user.role, set(user.sites)), "cookie", login.csrf)

    # -- the check -----------------------------------------------------------------------

    async def check(
        self, principal: Principal, action: Action, site_id: str | None = None
    ) -> Site | None:
        """Raise ``AccessDenied`` (401/403) unless ``principal`` may ``action`` on
        ``site_id``, and ``NotFound`` for a site that is not registered (only once the
        caller could have reached it: strangers learn nothing about which sites exist);
        return the site."""
        site = await self.site(site_id) if site_id is not None else None
        public = site is not None and site.public
        if not access.allowed(principal, action, site_id, public=public):
            status = access.refusal(principal)
            if status == 401:
                raise AccessDenied(401, "authorization", "credentials are required")
            field = "site_id" if site_id is not None else "authorization"
            what = action.value.replace("_", " ")
            on = f" ({site_id[:100]})" if site_id is not None else ""
            raise AccessDenied(403, field, f"this credential may not {what}{on}")
        if site_id is not None and site is None:
            raise NotFound("site_id", "is not a registered site")
        return site

    def require(self, principal: Principal, action: Action) -> None:
        """``check`` for an action that names no site (synchronous: needs no site)."""
        if not access.allowed(principal, action):
            status = access.refusal(principal)
            reason = "credentials are required" if status == 401 else "this credential may not"
            raise AccessDenied(
                status,
                "authorization",
                reason if status == 401 else f"{reason} {action.value.replace('_', ' ')}",
            )

    async def visible_sites(self, principal: Principal) -> list[Site]:
        sites = await self.sites()
        public = {s for s, site in sites.items() if site.public}
        return [sites[s] for s in access.visible(principal, sorted(sites), public)]
