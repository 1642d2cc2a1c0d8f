"""Who may do what: the one access policy every route, socket and command asks.

A caller is a ``Principal``: nobody (anonymous), a dashboard user (role ``admin`` or
``viewer`` with a list of sites), an API key (one site, or ``*`` for an admin key, and a
scope ``read`` | ``write`` | ``admin``), a shared link (one site, read only) or the metrics
token. ``allowed(principal, action, site, public=...)`` is the whole rule; routes map a
refusal to 401 when the caller brought no credential and 403 when it did (``refusal``).

The rules, as a demanding operator would want them:

- ``admin`` users may do everything, on every site.
- ``viewer`` users read the stats and the live channel of their sites, and list them.
- ``read`` keys read their site (stats, export, live); ``write`` keys only send events for
  it (a key that sends events from a server needs no read access); ``admin`` keys do all of
  that and manage their site: its settings, keys, shared links, forgetting a user, deleting
  it. An admin key for ``*`` is an admin user without a password (automation): it may add
  sites and manage users.
- a shared link reads its site; the metrics token reads ``/metrics`` and nothing else.
- anonymous callers read public sites, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Action(StrEnum):
    READ_STATS = "read_stats"
    """Stats API, quality, alerts, site settings of one site."""
    READ_LIVE = "read_live"
    WRITE_EVENTS = "write_events"
    """Server-side events with a key: may set the visitor's IP and User-Agent."""
    MANAGE_SITE = "manage_site"
    """Change or delete one site, forget a user, manage its shared links."""
    MANAGE_KEYS = "manage_keys"
    """Create, list and revoke the API keys of one site."""
    ADD_SITE = "add_site"
    MANAGE_USERS = "manage_users"
    READ_METRICS = "read_metrics"
    READ_ALL = "read_all"
    """What spans every site: quality and alerts without a site, live channel figures."""
    LIST_SITES = "list_sites"
    """Any caller with a credential may list the sites it can read (filtered)."""


class Kind(StrEnum):
    ANONYMOUS = "anonymous"
    USER = "user"
    KEY = "key"
    SHARE = "share"
    METRICS = "metrics"


ROLES: Final = ("admin", "viewer")
SCOPES: Final = ("read", "write", "admin")
ALL_SITES: Final = "*"
"""The site of an admin key that spans every site."""

_READ: Final = frozenset({Action.READ_STATS, Action.READ_LIVE})
_SITE_ADMIN: Final = _READ | {Action.WRITE_EVENTS, Action.MANAGE_SITE, Action.MANAGE_KEYS}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request. ``name`` identifies it in answers (an email, a key id)."""

    kind: Kind
    name: str = ""
    role: str = ""
    """A user's role: ``admin`` or ``viewer``."""
    scope: str = ""
    """A key's scope: ``read``, ``write`` or ``admin``."""
    sites: frozenset[str] = frozenset()
    """The sites a viewer, a key or a shared link is given (``*`` for every site)."""

    @property
    def has_credential(self) -> bool:
        return self.kind != Kind.ANONYMOUS

    @property
    def is_admin(self) -> bool:
        """Every site, every action: an admin user or an admin key for ``*``."""
        if self.kind == Kind.USER:
            return self.role == "admin"
        return self.kind == Kind.KEY and self.scope == "admin" and ALL_SITES in self.sites


ANONYMOUS: Final = Principal(Kind.ANONYMOUS)


def user(email: str, role: str, sites: frozenset[str] | set[str] = frozenset()) -> Principal:
    return Principal(Kind.USER, name=email, role=role, sites=frozenset(sites))


def key(key_id: str, site: str, scope: str) -> Principal:
    return Principal(Kind.KEY, name=key_id, scope=scope, sites=frozenset({site}))


def share(link_id: str, site: str) -> Principal:
    return Principal(Kind.SHARE, name=link_id, sites=frozenset({site}))


def metrics_reader() -> Principal:
    return Principal(Kind.METRICS, name="metrics token")


def allowed(
    principal: Principal, action: Action, site: str | None = None, *, public: bool = False
) -> bool:
    """Whether ``principal`` may do ``action`` (on ``site``, for per-site actions).

    ``public``: whether ``site`` is a public site (anonymous callers may read it)."""
    if principal.is_admin:
        return True
    on_site = site is not None and (site in principal.sites or ALL_SITES in principal.sites)
    kind = principal.kind
    if action == Action.LIST_SITES:
        return principal.has_credential and kind != Kind.METRICS
    if action in _READ and site is not None and public:
        return True
    if kind == Kind.USER:  # a viewer
        return action in _READ and on_site
    if kind == Kind.KEY:
        if not on_site:
            return False
        if principal.scope == "read":
            return action in _READ
        if principal.scope == "write":
            return action == Action.WRITE_EVENTS
        return principal.scope == "admin" and action in _SITE_ADMIN
    if kind == Kind.SHARE:
        return action in _READ and on_site
    if kind == Kind.METRICS:
        return action == Action.READ_METRICS
    return False


def refusal(principal: Principal) -> int:
    """The status of a refused request: 401 without a credential (say who you are), 403
    with one that does not reach (asking again with it will not help)."""
    return 403 if principal.has_credential else 401


def visible(principal: Principal, sites: list[str], public: set[str] | frozenset[str]) -> list[str]:
    """The sites of ``sites`` that ``principal`` may read (what ``GET /api/v1/sites`` lists)."""
    return [s for s in sites if allowed(principal, Action.READ_STATS, s, public=s in public)]
