"""The registry in memory: the reference semantics of ``stores.registry`` (part of the memory
store, a test double; imported by ``stores.memory`` only)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace

from hitstream.domain.funnels import Funnel
from hitstream.domain.goals import Goal
from hitstream.domain.sites import ApiKey, Login, LoginToken, SharedLink, Site, User
from hitstream.errors import Conflict
from hitstream.stores.registry import Registry


class MemoryRegistry(Registry):
    def __init__(self) -> None:
        self._version = 0
        self._sites: dict[str, Site] = {}
        self._users: dict[str, tuple[User, str]] = {}
        self._keys: dict[str, ApiKey] = {}
        self._logins: dict[str, Login] = {}
        self._links: dict[str, SharedLink] = {}
        self._tokens: dict[str, LoginToken] = {}
        self._refusals: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._forgotten: dict[tuple[str, str], int] = {}
        self._goals: dict[tuple[str, str], Goal] = {}
        self._funnels: dict[tuple[str, str], Funnel] = {}

    def _ensure(self) -> None:
        """Raise when unavailable (the store overrides it)."""

    def _delete_site_data(self, site_id: str) -> None:
        """Delete a removed site's stored data (the store overrides it)."""

    def _bump(self) -> None:
        self._version += 1

    async def registry_version(self) -> int:
        self._ensure()
        return self._version

    async def registered_sites(self) -> list[Site]:
        self._ensure()
        return [self._sites[k] for k in sorted(self._sites)]

    async def get_site(self, site_id: str) -> Site | None:
        self._ensure()
        return self._sites.get(site_id)

    def _check_umami(self, site: Site) -> None:
        if site.umami_website_id and any(
            other.umami_website_id == site.umami_website_id and other.site_id != site.site_id
            for other in self._sites.values()
        ):
            raise Conflict("umami_website_id", "is the Umami website id of another site")

    async def add_site(self, site: Site) -> None:
        self._ensure()
        if site.site_id in self._sites:
            raise Conflict("site_id", f"{site.site_id} is registered already")
        self._check_umami(site)
        self._sites[site.site_id] = site
        self._bump()

    async def update_site(self, site: Site) -> bool:
        self._ensure()
        if site.site_id not in self._sites:
            return False
        self._check_umami(site)
        self._sites[site.site_id] = site
        self._bump()
        return True

    async def remove_site(self, site_id: str) -> bool:
        self._ensure()
        if self._sites.pop(site_id, None) is None:
            return False
        for key_id in [k for k, v in self._keys.items() if v.site_id == site_id]:
            del self._keys[key_id]
        for link_id in [k for k, v in self._links.items() if v.site_id == site_id]:
            del self._links[link_id]
        for email, (user, hashed) in list(self._users.items()):
            if site_id in user.sites:
                sites = tuple(s for s in user.sites if s != site_id)
                self._users[email] = (replace(user, sites=sites), hashed)
        for key in [k for k in self._refusals if k[0] == site_id]:
            del self._refusals[key]
        for key in [k for k in self._goals if k[0] == site_id]:
            del self._goals[key]
        for key in [k for k in self._funnels if k[0] == site_id]:
            del self._funnels[key]
        self._delete_site_data(site_id)
        self._bump()
        return True

    async def users(self) -> list[User]:
        self._ensure()
        return [self._users[k][0] for k in sorted(self._users)]

    async def get_user(self, email: str) -> tuple[User, str] | None:
        self._ensure()
        return self._users.get(email)

    async def add_user(self, user: User, password_hash: str) -> None:
        self._ensure()
        if user.email in self._users:
            raise Conflict("email", f"{user.email} has an account already")
        self._users[user.email] = (user, password_hash)
        self._bump()

    async def update_user(self, user: User, password_hash: str | None = None) -> bool:
        self._ensure()
        held = self._users.get(user.email)
        if held is None:
            return False
        self._users[user.email] = (user, password_hash or held[1])
        if password_hash:
            self._drop_logins(user.email)
        self._bump()
        return True

    async def remove_user(self, email: str) -> bool:
        self._ensure()
        if self._users.pop(email, None) is None:
            return False
        self._drop_logins(email)
        self._bump()
        return True

    def _drop_logins(self, email: str) -> None:
        for token_hash in [k for k, v in self._logins.items() if v.email == email]:
            del self._logins[token_hash]

    async def add_key(self, key: ApiKey) -> None:
        self._ensure()
        if key.key_id in self._keys:
            raise Conflict("key_id", "exists already")
        self._keys[key.key_id] = key
        self._bump()

    async def keys(self, site_id: str | None = None) -> list[ApiKey]:
        self._ensure()
        found = [k for k in self._keys.values() if site_id is None or k.site_id == site_id]
        return sorted(found, key=lambda k: (k.created_at, k.key_id))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        self._ensure()
        for key in self._keys.values():
            if key.key_hash == key_hash and not key.revoked:
                return key
        return None

    async def revoke_key(self, key_id: str) -> bool:
        self._ensure()
        key = self._keys.get(key_id)
        if key is None:
            return False
        self._keys[key_id] = replace(key, revoked=True)
        self._bump()
        return True

    async def touch_key(self, key_id: str, at_ms: int) -> None:
        self._ensure()
        key = self._keys.get(key_id)
        if key is not None:
            self._keys[key_id] = replace(key, last_used_at=at_ms)

    async def add_login(self, login: Login) -> None:
        self._ensure()
        self._logins[login.token_hash] = login

    async def login_by_hash(self, token_hash: str, now_ms: int) -> Login | None:
        self._ensure()
        for stale in [k for k, v in self._logins.items() if v.expires_at <= now_ms]:
            del self._logins[stale]
        return self._logins.get(token_hash)

    async def remove_login(self, token_hash: str) -> None:
        self._ensure()
        self._logins.pop(token_hash, None)

    async def add_link(self, link: SharedLink) -> None:
        self._ensure()
        if link.link_id in self._links:
            raise Conflict("link_id", "exists already")
        self._links[link.link_id] = link
        self._bump()

    async def links(self, site_id: str) -> list[SharedLink]:
        self._ensure()
        found = [v for v in self._links.values() if v.site_id == site_id]
        return sorted(found, key=lambda v: (v.created_at, v.link_id))

    async def link_by_hash(self, token_hash: str) -> SharedLink | None:
        self._ensure()
        return next((v for v in self._links.values() if v.token_hash == token_hash), None)

    async def remove_link(self, link_id: str) -> bool:
        self._ensure()
        if self._links.pop(link_id, None) is None:
            return False
        self._bump()
        return True

    async def put_login_token(self, token: LoginToken) -> None:
        self._ensure()
        for old in [
            k
            for k, v in self._tokens.items()
            if v.purpose == token.purpose and v.email == token.email
        ]:
            del self._tokens[old]
        self._tokens[token.token_hash] = token

    async def use_login_token(self, token_hash: str, now_ms: int) -> LoginToken | None:
        self._ensure()
        token = self._tokens.get(token_hash)
        if token is None or (token.expires_at is not None and token.expires_at <= now_ms):
            return None
        if token.purpose == "setup":
            del self._tokens[token_hash]
        return token

    async def forgotten(self) -> dict[tuple[str, str], int]:
        self._ensure()
        return dict(self._forgotten)

    async def add_refusals(self, counts: Mapping[tuple[str, str], int]) -> None:
        self._ensure()
        for key, count in counts.items():
            self._refusals[key] += count

    async def refusals(self, site_id: str | None = None) -> dict[str, int]:
        self._ensure()
        found: defaultdict[str, int] = defaultdict(int)
        for (site, reason), count in self._refusals.items():
            if site_id is None or site == site_id:
                found[reason] += count
        return dict(found)

    async def goals(self, site_id: str) -> list[Goal]:
        self._ensure()
        return [g for (s, n), g in sorted(self._goals.items()) if s == site_id]

    async def add_goal(self, site_id: str, goal: Goal) -> None:
        self._ensure()
        if (site_id, goal.name) in self._goals:
            raise Conflict("name", f"{site_id} has a goal named {goal.name!r} already")
        self._goals[(site_id, goal.name)] = goal

    async def remove_goal(self, site_id: str, name: str) -> bool:
        self._ensure()
        return self._goals.pop((site_id, name), None) is not None

    async def funnels(self, site_id: str) -> list[Funnel]:
        self._ensure()
        return [f for (s, n), f in sorted(self._funnels.items()) if s == site_id]

    async def add_funnel(self, site_id: str, funnel: Funnel) -> None:
        self._ensure()
        if (site_id, funnel.name) in self._funnels:
            raise Conflict("name", f"{site_id} has a funnel named {funnel.name!r} already")
        self._funnels[(site_id, funnel.name)] = funnel

    async def remove_funnel(self, site_id: str, name: str) -> bool:
        self._ensure()
        return self._funnels.pop((site_id, name), None) is not None
