"""The registry port: sites, users, API keys, logins, shared links and one-time login links.

It lives in the store (every store object implements it), so that every process of a
scaled-out deployment sees the same sites and keys: a key created through one web process
works on another. Secrets are never stored, only their hashes (``domain.credentials``), and
looked up by hash. ``registry_version`` grows with every change to sites, users, keys and
links: processes keep in-memory copies (the collectors' site book, the credential cache) and
re-read them when it moves, which costs one tiny query at most once a second.

Guarantees every adapter keeps (the registry contract suite checks them over memory, DuckDB
and PostgreSQL): ``add_*`` of a name that exists raises ``Conflict`` and changes nothing;
``remove_site`` deletes the site's registration, keys, links, its place in users' site lists
and all its stored data (events, visits, drops, rollups, refusals) in one transaction, and
bumps its data version (cached answers go stale) and deletes its goals and funnels; goal and
funnel names are unique per site (``add_goal``/``add_funnel`` of a taken name: ``Conflict``);
lookups of revoked keys, expired logins or
used one-time tokens find nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from hitstream.domain.funnels import Funnel
from hitstream.domain.goals import Goal
from hitstream.domain.sites import ApiKey, Login, LoginToken, SharedLink, Site, User


class Registry(ABC):
    @abstractmethod
    async def registry_version(self) -> int:
        """Grows with every change to sites, users, keys or links."""

    # -- sites ---------------------------------------------------------------------------

    @abstractmethod
    async def registered_sites(self) -> list[Site]:
        """Every registered site, by ``site_id``."""

    @abstractmethod
    async def get_site(self, site_id: str) -> Site | None: ...

    @abstractmethod
    async def add_site(self, site: Site) -> None:
        """Register ``site``; ``Conflict`` if its ``site_id`` is registered already."""

    @abstractmethod
    async def update_site(self, site: Site) -> bool:
        """Store new settings of a registered site (False if it is not registered)."""

    @abstractmethod
    async def remove_site(self, site_id: str) -> bool:
        """Unregister the site and delete everything stored for it (see the module)."""

    # -- users ---------------------------------------------------------------------------

    @abstractmethod
    async def users(self) -> list[User]: ...

    @abstractmethod
    async def get_user(self, email: str) -> tuple[User, str] | None:
        """The user and its password hash (argon2id, PHC string)."""

    @abstractmethod
    async def add_user(self, user: User, password_hash: str) -> None:
        """``Conflict`` if the email is taken."""

    @abstractmethod
    async def update_user(self, user: User, password_hash: str | None = None) -> bool:
        """Role and sites from ``user``; a new ``password_hash`` also ends every login of the
        user (a password reset locks out whoever holds an old cookie)."""

    @abstractmethod
    async def remove_user(self, email: str) -> bool:
        """Remove the user and every login of theirs."""

    # -- API keys ------------------------------------------------------------------------

    @abstractmethod
    async def add_key(self, key: ApiKey) -> None: ...

    @abstractmethod
    async def keys(self, site_id: str | None = None) -> list[ApiKey]:
        """Keys (revoked ones too), of one site or all, oldest first."""

    @abstractmethod
    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, unless revoked."""

    @abstractmethod
    async def revoke_key(self, key_id: str) -> bool: ...

    @abstractmethod
    async def touch_key(self, key_id: str, at_ms: int) -> None:
        """Record a use (``last_used_at``); not a change that moves the version."""

    # -- logins --------------------------------------------------------------------------

    @abstractmethod
    async def add_login(self, login: Login) -> None: ...

    @abstractmethod
    async def login_by_hash(self, token_hash: str, now_ms: int) -> Login | None:
        """The login with this cookie hash, unless it expired (expired ones are deleted)."""

    @abstractmethod
    async def remove_login(self, token_hash: str) -> None: ...

    # -- shared links --------------------------------------------------------------------

    @abstractmethod
    async def add_link(self, link: SharedLink) -> None: ...

    @abstractmethod
    async def links(self, site_id: str) -> list[SharedLink]: ...

    @abstractmethod
    async def link_by_hash(self, token_hash: str) -> SharedLink | None: ...

    @abstractmethod
    async def remove_link(self, link_id: str) -> bool: ...

    # -- one-time and time-bound login links ---------------------------------------------

    @abstractmethod
    async def put_login_token(self, token: LoginToken) -> None:
        """Store a login link, replacing every earlier one of the same purpose and email."""

    @abstractmethod
    async def use_login_token(self, token_hash: str, now_ms: int) -> LoginToken | None:
        """The link with this hash if still valid; a ``setup`` link is used up (deleted)."""

    @abstractmethod
    async def forgotten(self) -> dict[tuple[str, str], int]:
        """(site, visitor hash) -> when each forgotten user was forgotten (epoch ms); written
        by ``Store.forget_user`` in its transaction."""

    # -- refusals (the collectors' counts, kept where they survive restarts) --------------

    @abstractmethod
    async def add_refusals(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add (site, reason) -> count."""

    @abstractmethod
    async def refusals(self, site_id: str | None = None) -> dict[str, int]:
        """reason -> count, for one site, or for all with the site-less ones (site ``""``:
        another sender's, for admins only)."""

    # -- goals and saved funnels (per site, names unique per site) ------------------------

    @abstractmethod
    async def goals(self, site_id: str) -> list[Goal]:
        """The site's goals, by name."""

    @abstractmethod
    async def add_goal(self, site_id: str, goal: Goal) -> None:
        """``Conflict`` if the site has a goal of that name."""

    @abstractmethod
    async def remove_goal(self, site_id: str, name: str) -> bool: ...

    @abstractmethod
    async def funnels(self, site_id: str) -> list[Funnel]:
        """The site's saved funnels, by name."""

    @abstractmethod
    async def add_funnel(self, site_id: str, funnel: Funnel) -> None:
        """``Conflict`` if the site has a funnel of that name."""

    @abstractmethod
    async def remove_funnel(self, site_id: str, name: str) -> bool: ...
