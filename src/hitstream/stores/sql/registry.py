"""The registry in SQL, shared by DuckDB and PostgreSQL: one statement list per operation.

Statements name parameters ``$name`` (DuckDB's style; the PostgreSQL adapter rewrites them to
psycopg's) and use only what both dialects read alike: TEXT, BIGINT, BOOLEAN, ``ON CONFLICT``
and ``RETURNING``. Lists and settings are JSON text. Each operation runs as one transaction
through the adapter's ``_registry_tx``; a change to sites, users, keys or links bumps
``registry_state.version`` in the same transaction. What removing a site deletes besides the
registry's rows is the adapter's (``_site_data_statements``): its tables differ.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Final

from hitstream.domain.funnels import Funnel
from hitstream.domain.goals import Goal
from hitstream.domain.sites import ApiKey, Login, LoginToken, SharedLink, Site, User
from hitstream.domain.visitors import user_hash
from hitstream.errors import Conflict
from hitstream.stores.registry import Registry

Row = tuple[Any, ...]
Statement = tuple[str, dict[str, object]]
BUMP: Final[Statement] = ("UPDATE registry_state SET version = version + 1", {})
_SITE: Final = (
    "site_id, timezone, allowed_hosts, retention_days, public, created_at, settings, "
    "umami_website_id"
)
_KEY: Final = "key_id, site_id, scope, key_hash, prefix, name, created_at, last_used_at, revoked"


def _site(row: Row) -> Site:
    site_id, tz, hosts, retention, public, created, settings, umami = row
    return Site(
        site_id, tz, tuple(json.loads(hosts)), int(retention), bool(public), int(created),
        json.loads(settings), umami or "",
    )  # fmt: skip


def _key(row: Row) -> ApiKey:
    key_id, site_id, scope, key_hash, prefix, name, created, used, revoked = row
    return ApiKey(
        key_id, site_id, scope, key_hash, prefix, name, int(created),
        None if used is None else int(used), bool(revoked),
    )  # fmt: skip


def _user(row: Row) -> User:
    email, role, sites, created = row
    return User(email, role, tuple(json.loads(sites)), int(created))


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _site_params(site: Site) -> dict[str, object]:
    return {
        "site_id": site.site_id,
        "timezone": site.timezone,
        "hosts": _json(list(site.allowed_hosts)),
        "retention": site.retention_days,
        "public": site.public,
        "created": site.created_at,
        "settings": _json(dict(site.settings)),
        "umami": site.umami_website_id or None,
    }


class SqlRegistry(Registry):
    @abstractmethod
    async def _registry_tx(self, statements: Sequence[Statement]) -> list[list[Row]]:
        """Run the statements in one transaction; the rows of each, in order."""

    @abstractmethod
    def _site_data_statements(self, site_id: str) -> list[Statement]:
        """What deletes a removed site's data (events, visits, rollups ...) and bumps its
        data version, in this dialect."""

    async def _one(self, sql: str, params: dict[str, object] | None = None) -> list[Row]:
        return (await self._registry_tx([(sql, params or {})]))[0]

    async def registry_version(self) -> int:
        rows = await self._one("SELECT version FROM registry_state")
        return int(rows[0][0]) if rows else 0

    async def registered_sites(self) -> list[Site]:
        rows = await self._one(f"SELECT {_SITE} FROM site_registry ORDER BY site_id")
        return sorted((_site(r) for r in rows), key=lambda s: s.site_id)

    async def get_site(self, site_id: str) -> Site | None:
        rows = await self._one(
            f"SELECT {_SITE} FROM site_registry WHERE site_id = $s", {"s": site_id}
        )
        return _site(rows[0]) if rows else None

    async def _check_umami(self, site: Site) -> None:
        """The Umami website id is unique among sites (an admin's rare write: checked here,
        not by an index, so that both dialects read it alike)."""
        if not site.umami_website_id:
            return
        rows = await self._one(
            "SELECT site_id FROM site_registry WHERE umami_website_id = $u AND site_id <> $s",
            {"u": site.umami_website_id, "s": site.site_id},
        )
        if rows:
            raise Conflict("umami_website_id", "is the Umami website id of another site")

    async def add_site(self, site: Site) -> None:
        await self._check_umami(site)
        results = await self._registry_tx(
            [
                (
                    f"INSERT INTO site_registry ({_SITE}) VALUES ($site_id, $timezone, $hosts, "
                    "$retention, $public, $created, $settings, $umami) ON CONFLICT DO NOTHING "
                    "RETURNING site_id",
                    _site_params(site),
                ),
                BUMP,
            ]
        )
        if not results[0]:
            raise Conflict("site_id", f"{site.site_id} is registered already")

    async def update_site(self, site: Site) -> bool:
        await self._check_umami(site)
        results = await self._registry_tx(
            [
                (
                    "UPDATE site_registry SET timezone = $timezone, allowed_hosts = $hosts, "
                    "retention_days = $retention, public = $public, settings = $settings, "
                    "umami_website_id = $umami WHERE site_id = $site_id RETURNING site_id",
                    _site_params(site),
                ),
                BUMP,
            ]
        )
        return bool(results[0])

    async def remove_site(self, site_id: str) -> bool:
        if await self.get_site(site_id) is None:
            return False
        users = [u for u in await self.users() if site_id in u.sites]
        s: dict[str, object] = {"s": site_id}
        statements: list[Statement] = [
            ("DELETE FROM forgotten WHERE site_id = $s", s),
            ("DELETE FROM api_keys WHERE site_id = $s", s),
            ("DELETE FROM shared_links WHERE site_id = $s", s),
            ("DELETE FROM refusals WHERE site_id = $s", s),
            ("DELETE FROM site_definitions WHERE site_id = $s", s),
            *self._site_data_statements(site_id),
            ("DELETE FROM site_registry WHERE site_id = $s RETURNING site_id", s),
            BUMP,
        ]
        for user in users:
            sites = [x for x in user.sites if x != site_id]
            statements.append(
                (
                    "UPDATE users SET sites = $sites WHERE email = $e",
                    {"sites": _json(sites), "e": user.email},
                )
            )
        results = await self._registry_tx(statements)
        return bool(results[len(statements) - len(users) - 2])

    async def users(self) -> list[User]:
        rows = await self._one("SELECT email, role, sites, created_at FROM users ORDER BY email")
        return sorted((_user(r) for r in rows), key=lambda u: u.email)

    async def get_user(self, email: str) -> tuple[User, str] | None:
        rows = await self._one(
            "SELECT email, role, sites, created_at, password_hash FROM users WHERE email = $e",
            {"e": email},
        )
        return (_user(rows[0][:4]), str(rows[0][4])) if rows else None

    async def add_user(self, user: User, password_hash: str) -> None:
        results = await self._registry_tx(
            [
                (
                    "INSERT INTO users (email, role, sites, created_at, password_hash) "
                    "VALUES ($e, $r, $s, $c, $h) ON CONFLICT DO NOTHING RETURNING email",
                    {
                        "e": user.email,
                        "r": user.role,
                        "s": _json(list(user.sites)),
                        "c": user.created_at,
                        "h": password_hash,
                    },
                ),
                BUMP,
            ]
        )
        if not results[0]:
            raise Conflict("email", f"{user.email} has an account already")

    async def update_user(self, user: User, password_hash: str | None = None) -> bool:
        statements: list[Statement] = [
            (
                "UPDATE users SET role = $r, sites = $s, "
                "password_hash = coalesce($h, password_hash) WHERE email = $e "
                "RETURNING email",
                {
                    "e": user.email,
                    "r": user.role,
                    "s": _json(list(user.sites)),
                    "h": password_hash,
                },
            )
        ]
        if password_hash:  # a new password ends every login of the user (a reset locks out)
            statements.append(("DELETE FROM logins WHERE email = $e", {"e": user.email}))
        results = await self._registry_tx([*statements, BUMP])
        return bool(results[0])

    async def remove_user(self, email: str) -> bool:
        results = await self._registry_tx(
            [
                ("DELETE FROM logins WHERE email = $e", {"e": email}),
                ("DELETE FROM users WHERE email = $e RETURNING email", {"e": email}),
                BUMP,
            ]
        )
        return bool(results[1])

    async def add_key(self, key: ApiKey) -> None:
        results = await self._registry_tx(
            [
                (
                    f"INSERT INTO api_keys ({_KEY}) VALUES ($i, $s, $sc, $h, $p, $n, $c, NULL, "
                    "FALSE) ON CONFLICT DO NOTHING RETURNING key_id",
                    {
                        "i": key.key_id,
                        "s": key.site_id,
                        "sc": key.scope,
                        "h": key.key_hash,
                        "p": key.prefix,
                        "n": key.name,
                        "c": key.created_at,
                    },
                ),
                BUMP,
            ]
        )
        if not results[0]:
            raise Conflict("key_id", "exists already")

    async def keys(self, site_id: str | None = None) -> list[ApiKey]:
        rows = await self._one(
            f"SELECT {_KEY} FROM api_keys WHERE $s::TEXT IS NULL OR site_id = $s::TEXT",
            {"s": site_id},
        )
        return sorted((_key(r) for r in rows), key=lambda k: (k.created_at, k.key_id))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        rows = await self._one(
            f"SELECT {_KEY} FROM api_keys WHERE key_hash = $h AND NOT revoked", {"h": key_hash}
        )
        return _key(rows[0]) if rows else None

    async def revoke_key(self, key_id: str) -> bool:
        results = await self._registry_tx(
            [
                (
                    "UPDATE api_keys SET revoked = TRUE WHERE key_id = $i RETURNING key_id",
                    {"i": key_id},
                ),
                BUMP,
            ]
        )
        return bool(results[0])

    async def touch_key(self, key_id: str, at_ms: int) -> None:
        await self._one(
            "UPDATE api_keys SET last_used_at = $t WHERE key_id = $i", {"i": key_id, "t": at_ms}
        )

    async def add_login(self, login: Login) -> None:
        await self._one(
            "INSERT INTO logins (token_hash, email, csrf, expires_at, created_at) "
            "VALUES ($h, $e, $c, $x, $n)",
            {
                "h": login.token_hash,
                "e": login.email,
                "c": login.csrf,
                "x": login.expires_at,
                "n": login.created_at,
            },
        )

    async def login_by_hash(self, token_hash: str, now_ms: int) -> Login | None:
        results = await self._registry_tx(
            [
                ("DELETE FROM logins WHERE expires_at <= $now", {"now": now_ms}),
                (
                    "SELECT token_hash, email, csrf, expires_at, created_at FROM logins "
                    "WHERE token_hash = $h",
                    {"h": token_hash},
                ),
            ]
        )
        rows = results[1]
        if not rows:
            return None
        h, email, csrf, expires, created = rows[0]
        return Login(h, email, csrf, int(expires), int(created))

    async def remove_login(self, token_hash: str) -> None:
        await self._one("DELETE FROM logins WHERE token_hash = $h", {"h": token_hash})

    async def add_link(self, link: SharedLink) -> None:
        results = await self._registry_tx(
            [
                (
                    "INSERT INTO shared_links (link_id, site_id, token_hash, name, created_at) "
                    "VALUES ($i, $s, $h, $n, $c) ON CONFLICT DO NOTHING RETURNING link_id",
                    {
                        "i": link.link_id,
                        "s": link.site_id,
                        "h": link.token_hash,
                        "n": link.name,
                        "c": link.created_at,
                    },
                ),
                BUMP,
            ]
        )
        if not results[0]:
            raise Conflict("link_id", "exists already")

    async def links(self, site_id: str) -> list[SharedLink]:
        rows = await self._one(
            "SELECT link_id, site_id, token_hash, name, created_at FROM shared_links "
            "WHERE site_id = $s",
            {"s": site_id},
        )
        found = [SharedLink(i, s, h, n, int(c)) for i, s, h, n, c in rows]
        return sorted(found, key=lambda v: (v.created_at, v.link_id))

    async def link_by_hash(self, token_hash: str) -> SharedLink | None:
        rows = await self._one(
            "SELECT link_id, site_id, token_hash, name, created_at FROM shared_links "
            "WHERE token_hash = $h",
            {"h": token_hash},
        )
        if not rows:
            return None
        i, s, h, n, c = rows[0]
        return SharedLink(i, s, h, n, int(c))

    async def remove_link(self, link_id: str) -> bool:
        results = await self._registry_tx(
            [
                ("DELETE FROM shared_links WHERE link_id = $i RETURNING link_id", {"i": link_id}),
                BUMP,
            ]
        )
        return bool(results[0])

    async def put_login_token(self, token: LoginToken) -> None:
        await self._registry_tx(
            [
                (
                    "DELETE FROM login_tokens WHERE purpose = $p AND email = $e",
                    {"p": token.purpose, "e": token.email},
                ),
                (
                    "INSERT INTO login_tokens (token_hash, purpose, email, expires_at) "
                    "VALUES ($h, $p, $e, $x)",
                    {
                        "h": token.token_hash,
                        "p": token.purpose,
                        "e": token.email,
                        "x": token.expires_at,
                    },
                ),
            ]
        )

    async def use_login_token(self, token_hash: str, now_ms: int) -> LoginToken | None:
        rows = await self._one(
            "SELECT token_hash, purpose, email, expires_at FROM login_tokens "
            "WHERE token_hash = $h AND (expires_at IS NULL OR expires_at > $now)",
            {"h": token_hash, "now": now_ms},
        )
        if not rows:
            return None
        h, purpose, email, expires = rows[0]
        if purpose == "setup":  # used up: only the one request that deletes it wins
            gone = await self._one(
                "DELETE FROM login_tokens WHERE token_hash = $h RETURNING token_hash", {"h": h}
            )
            if not gone:
                return None
        return LoginToken(h, purpose, email, None if expires is None else int(expires))

    async def forgotten(self) -> dict[tuple[str, str], int]:
        rows = await self._one("SELECT site_id, visitor_id, forgotten_at FROM forgotten")
        return {(site, visitor): int(at) for site, visitor, at in rows}

    async def add_refusals(self, counts: Mapping[tuple[str, str], int]) -> None:
        if not counts:
            return
        keys = sorted(counts)
        statements: list[Statement] = [
            (
                "INSERT INTO refusals (site_id, reason, count) VALUES ($s, $r, $n) "
                "ON CONFLICT (site_id, reason) "
                "DO UPDATE SET count = refusals.count + excluded.count",
                {"s": site, "r": reason, "n": counts[(site, reason)]},
            )
            for site, reason in keys
        ]
        await self._registry_tx(statements)

    async def refusals(self, site_id: str | None = None) -> dict[str, int]:
        rows = await self._one(
            "SELECT reason, sum(count) FROM refusals WHERE $s::TEXT IS NULL "
            "OR site_id = $s::TEXT GROUP BY reason",
            {"s": site_id},
        )
        return {reason: int(count) for reason, count in rows}


def forgotten_statement(site_id: str, user_id: str, at_ms: int) -> Statement:
    """Record a forgotten user (their visitor hash), in ``forget_user``'s transaction."""
    return (
        "INSERT INTO forgotten (site_id, visitor_id, forgotten_at) VALUES ($s, $v, $t) "
        "ON CONFLICT (site_id, visitor_id) DO UPDATE SET forgotten_at = excluded.forgotten_at",
        {"s": site_id, "v": user_hash(site_id, user_id), "t": at_ms},
    )


def _goal(document: str) -> Goal:
    data = json.loads(document)
    props = tuple((str(k), str(v)) for k, v in sorted(data.get("props", {}).items()))
    return Goal(data["name"], data.get("page", ""), data.get("event_name", ""), props)


def _funnel(document: str) -> Funnel:
    data = json.loads(document)
    return Funnel(data["name"], tuple(data["steps"]), data.get("window"))


class SqlDefinitions(SqlRegistry):
    """Goals and saved funnels: one row per (site, kind, name), the definition as JSON."""

    async def _definitions(self, site_id: str, kind: str) -> list[str]:
        rows = await self._one(
            "SELECT name, definition FROM site_definitions WHERE site_id = $s AND kind = $k",
            {"s": site_id, "k": kind},
        )
        return [row[1] for row in sorted(rows)]

    async def _add_definition(self, site_id: str, kind: str, name: str, document: object) -> None:
        rows = await self._one(
            "INSERT INTO site_definitions (site_id, kind, name, definition) "
            "VALUES ($s, $k, $n, $d) ON CONFLICT DO NOTHING RETURNING name",
            {"s": site_id, "k": kind, "n": name, "d": _json(document)},
        )
        if not rows:
            raise Conflict("name", f"{site_id} has a {kind} named {name!r} already")

    async def _remove_definition(self, site_id: str, kind: str, name: str) -> bool:
        rows = await self._one(
            "DELETE FROM site_definitions WHERE site_id = $s AND kind = $k AND name = $n "
            "RETURNING name",
            {"s": site_id, "k": kind, "n": name},
        )
        return bool(rows)

    async def goals(self, site_id: str) -> list[Goal]:
        return [_goal(d) for d in await self._definitions(site_id, "goal")]

    async def add_goal(self, site_id: str, goal: Goal) -> None:
        await self._add_definition(site_id, "goal", goal.name, goal.as_dict())

    async def remove_goal(self, site_id: str, name: str) -> bool:
        return await self._remove_definition(site_id, "goal", name)

    async def funnels(self, site_id: str) -> list[Funnel]:
        return [_funnel(d) for d in await self._definitions(site_id, "funnel")]

    async def add_funnel(self, site_id: str, funnel: Funnel) -> None:
        await self._add_definition(site_id, "funnel", funnel.name, funnel.as_dict())

    async def remove_funnel(self, site_id: str, name: str) -> bool:
        return await self._remove_definition(site_id, "funnel", name)
