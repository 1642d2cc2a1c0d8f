"""Accounts: users and their passwords, logins, the first-run setup link, keys and links.

Passwords are hashed with argon2id (argon2-cffi's defaults: 64 MiB, 3 passes, 4 lanes; a
hash takes ~50 ms of CPU and runs in a worker thread, off the event loop). Logins are random
256-bit cookies kept as SHA-256 with their CSRF secret; failed logins are throttled per
account and per client address, exponentially (``domain.throttle``). Every token made here
is shown once and stored as a hash (``domain.credentials``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from hitstream.domain import sites as rules
from hitstream.domain.credentials import make_token, shown_prefix, token_hash
from hitstream.domain.errors import AccessDenied, Conflict, QueryError, RateLimited
from hitstream.domain.ratelimit import retry_after
from hitstream.domain.sites import ApiKey, Login, LoginToken, SharedLink, User
from hitstream.domain.throttle import Throttle
from hitstream.stores.registry import Registry

if TYPE_CHECKING:
    from argon2 import PasswordHasher

LOGIN_TTL_MS: Final = 14 * 86_400_000
"""A login lasts 14 days (then the dashboard asks again)."""
DEMO_LINK_TTL_MS: Final = 7 * 86_400_000
_UNUSABLE: Final = "!"
"""A password hash no password matches (the demo's viewer logs in by link only)."""


ADDRESS_MEMORY_S: Final = 900.0
"""How long an address's failed logins count against it after the last one."""


def _wall_ms() -> int:
    return int(time.time() * 1000)


class Accounts:
    def __init__(
        self,
        registry: Registry,
        *,
        wall_ms: Callable[[], int] = _wall_ms,
        clock: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
        throttle: Throttle | None = None,
    ) -> None:
        self.registry = registry
        self._wall_ms = wall_ms
        self._clock = clock
        self._random = random_bytes
        self.throttle = throttle or Throttle()
        self._hasher: PasswordHasher | None = None
        self._dummy: str | None = None

    # -- passwords -----------------------------------------------------------------------

    def _ph(self) -> PasswordHasher:
        if self._hasher is None:
            from argon2 import PasswordHasher

            self._hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        return self._hasher

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self._ph().hash, password)

    async def _verify(self, hashed: str, password: str) -> bool:
        if hashed == _UNUSABLE:
            return False
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            return await asyncio.to_thread(self._ph().verify, hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    # -- users ---------------------------------------------------------------------------

    async def add_user(
        self, email: str, role: str, sites: Sequence[str], password: str | None
    ) -> User:
        """A new user (``password`` None: one that can only log in by link)."""
        user = User(
            rules.check_email(email),
            rules.check_role(role),
            tuple(rules.check_site_id(s, "sites") for s in sites),
            self._wall_ms(),
        )
        await self.check_sites(user.sites)
        hashed = (
            _UNUSABLE
            if password is None
            else await self.hash_password(rules.check_password(password))
        )
        await self.registry.add_user(user, hashed)
        return user

    async def check_sites(self, sites: Sequence[str]) -> None:
        """A user may be given registered sites only: access to a domain nobody registered
        yet would come with whoever registers it. ``QueryError`` naming ``sites``."""
        for site_id in sites:
            if await self.registry.get_site(site_id) is None:
                raise QueryError("sites", f"{site_id!r} is not a registered site")

    async def set_password(self, email: str, password: str) -> bool:
        found = await self.registry.get_user(email)
        if found is None:
            return False
        hashed = await self.hash_password(rules.check_password(password))
        return await self.registry.update_user(found[0], hashed)

    # -- logins --------------------------------------------------------------------------

    async def _new_login(self, email: str) -> tuple[str, Login]:
        cookie = make_token("login", self._random(32))
        now = self._wall_ms()
        csrf = make_token("csrf", self._random(32))
        login = Login(token_hash(cookie), email, csrf, now + LOGIN_TTL_MS, now)
        await self.registry.add_login(login)
        return cookie, login

    async def login(self, email: str, password: str, client: str) -> tuple[str, Login]:
        """A new login for a right email and password; ``AccessDenied`` (401) otherwise,
        ``RateLimited`` while the account or the address must wait."""
        address = email.strip().lower()
        keys = [f"account:{address}", f"address:{client}"]
        # an address (an office behind one NAT) is cleared by no one's success: its failures
        # are forgotten after a quiet quarter of an hour
        self.throttle.expire(keys[1], self._clock(), ADDRESS_MEMORY_S)
        wait = self.throttle.wait(keys, self._clock())
        if wait > 0:
            seconds = retry_after(wait)
            raise RateLimited(
                "login",
                f"too many failed attempts: try again in {seconds} s (each failure doubles it)",
                seconds,
            )
        found = await self.registry.get_user(address)
        ok = found is not None and await self._verify(found[1], password)
        if not ok or found is None:
            if found is None:  # as slow as a wrong password: no telling which emails exist
                await self._verify(await self._dummy_hash(), password)
            self.throttle.failed(keys, self._clock())
            raise AccessDenied(401, "password", "wrong email or password")
        # clears the account's waits only: one right password of an account someone holds
        # must not reset the address's (guessing others' passwords between own logins)
        self.throttle.succeeded(keys[:1])
        return await self._new_login(address)

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await self.hash_password("not a password of anyone")
        return self._dummy

    async def logout(self, cookie: str) -> None:
        await self.registry.remove_login(token_hash(cookie))

    async def login_of(self, cookie: str) -> Login | None:
        return await self.registry.login_by_hash(token_hash(cookie), self._wall_ms())

    # -- first run and login links -------------------------------------------------------

    async def needs_setup(self) -> bool:
        """No admin yet (the demo's password-less viewer does not count)."""
        return not any(user.role == "admin" for user in await self.registry.users())

    async def setup_token(self) -> str:
        """A new one-time setup link token. Each process that serves the dashboard prints
        its own (several web processes start together on one database), and each works
        until an admin exists; the next start of the same process prints a new one."""
        token = make_token("setup", self._random(32))
        # keyed apart (the registry replaces a token of the same purpose and email)
        slot = f"setup:{self._random(6).hex()}"
        await self.registry.put_login_token(LoginToken(token_hash(token), "setup", slot))
        return token

    async def complete_setup(self, token: str, email: str, password: str) -> tuple[str, Login]:
        """Create the first admin with a setup token, used up here; a new login."""
        rules.check_email(email)
        rules.check_password(password)
        if not await self.needs_setup():
            raise AccessDenied(403, "token", "hitstream is set up already: log in")
        used = await self.registry.use_login_token(token_hash(token), self._wall_ms())
        if used is None or used.purpose != "setup":
            raise AccessDenied(403, "token", "this setup link was used already or is unknown")
        user = await self.add_user(email, "admin", (), password)
        return await self._new_login(user.email)

    async def login_link(self, email: str, sites: Sequence[str]) -> str:
        """A link that logs in as a viewer of ``sites`` (the demo's), valid 7 days."""
        with contextlib.suppress(Conflict):  # made by an earlier start
            await self.add_user(email, "viewer", sites, None)
        token = make_token("login", self._random(32))
        expires = self._wall_ms() + DEMO_LINK_TTL_MS
        await self.registry.put_login_token(LoginToken(token_hash(token), "login", email, expires))
        return token

    async def use_login_link(self, token: str) -> tuple[str, Login] | None:
        used = await self.registry.use_login_token(token_hash(token), self._wall_ms())
        if used is None or used.purpose != "login":
            return None
        return await self._new_login(used.email)

    # -- keys and shared links -----------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return prefix + self._random(6).hex()

    async def create_key(self, site_id: str, scope: str, name: str = "") -> tuple[str, ApiKey]:
        scope = rules.check_scope(scope)
        site = rules.check_key_site(site_id, scope)
        if site != "*" and await self.registry.get_site(site) is None:
            raise QueryError("site_id", "is not a registered site")
        token = make_token("key", self._random(32))
        key = ApiKey(
            self._id("key_"), site, scope, token_hash(token), shown_prefix(token),
            rules.check_name(name), self._wall_ms(),
        )  # fmt: skip
        await self.registry.add_key(key)
        return token, key

    async def create_link(self, site_id: str, name: str = "") -> tuple[str, SharedLink]:
        token = make_token("share", self._random(32))
        link = SharedLink(
            self._id("link_"), site_id, token_hash(token), rules.check_name(name), self._wall_ms()
        )
        await self.registry.add_link(link)
        return token, link
