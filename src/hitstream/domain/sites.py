"""Sites and the registry's records: what a site is, who may see it, and how to check input.

A site is registered under its domain (its ``site_id``) with a time zone (IANA), allowed
hostnames, a retention in days (0: keep forever), a public flag and free-form ``settings``
(a JSON object that later features extend: goals, funnels) so that they need no new column,
and the id Umami's tracker sends for it (``umami_website_id``, unique among sites). The
records of users, API keys, login sessions and shared links live beside it in the same
registry (``hitstream.stores.registry``); secrets appear there only as hashes
(``hitstream.domain.credentials``).

Allowed hosts: an event's URL host (and a browser's ``Origin``) must be one of them. With no
list the default is the domain and its subdomains (``example.com`` allows ``example.com``,
``www.example.com``, ``shop.example.com``); a list replaces the default, and an entry
``*.example.com`` allows every subdomain of ``example.com`` (not ``example.com`` itself).
Hosts compare case-insensitively, without port and trailing dot.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from hitstream.domain.access import ALL_SITES, ROLES, SCOPES
from hitstream.domain.errors import Conflict, QueryError
from hitstream.domain.stats import check_zone

SITE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
HOST: Final = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$")
EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
MAX_HOSTS: Final = 50
MAX_RETENTION_DAYS: Final = 36_500
MAX_NAME: Final = 100
MAX_SETTINGS_BYTES: Final = 64 * 1024
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 1024


@dataclass(frozen=True, slots=True)
class Site:
    site_id: str
    timezone: str = "UTC"
    allowed_hosts: tuple[str, ...] = ()
    """Empty: the domain and its subdomains."""
    retention_days: int = 0
    """0 keeps everything."""
    public: bool = False
    created_at: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Per-site settings of later features (JSON object), kept as given."""
    umami_website_id: str = ""
    """The ``website`` id Umami's tracker sends for this site (a lowercase UUID; "": none)."""

    def hosts(self) -> tuple[str, ...]:
        """The effective allowed hosts (the default written out)."""
        return self.allowed_hosts or _default(self.site_id)

    def allows(self, host: str) -> bool:
        return host_allowed(self.hosts(), host)

    def as_dict(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "timezone": self.timezone,
            "allowed_hosts": list(self.hosts()),
            "retention_days": self.retention_days,
            "public": self.public,
            "created_at": self.created_at,
            "settings": dict(self.settings),
            "umami_website_id": self.umami_website_id or None,
        }


@dataclass(frozen=True, slots=True)
class User:
    email: str
    role: str
    sites: tuple[str, ...] = ()
    created_at: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "role": self.role,
            "sites": list(self.sites),
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    site_id: str
    scope: str
    key_hash: str
    prefix: str
    name: str = ""
    created_at: int = 0
    last_used_at: int | None = None
    revoked: bool = False

    def as_dict(self) -> dict[str, Any]:
        """What an answer shows of a key: never its hash."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "site_id": self.site_id,
            "scope": self.scope,
            "prefix": self.prefix,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class Login:
    """A dashboard login: the cookie's hash, whose it is, until when, its CSRF secret."""

    token_hash: str
    email: str
    csrf: str
    expires_at: int
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class SharedLink:
    link_id: str
    site_id: str
    token_hash: str
    name: str = ""
    created_at: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "link_id": self.link_id,
            "site_id": self.site_id,
            "name": self.name,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class LoginToken:
    """A one-time or time-bound link that logs in: the first-run setup (``purpose`` setup,
    no email: it creates the first admin) or the demo's (``login`` as ``email``)."""

    token_hash: str
    purpose: str
    email: str = ""
    expires_at: int | None = None


# -- checking input --------------------------------------------------------------------


def normal_host(host: str) -> str:
    """Lowercase, without port and trailing dot (IPv6 literals keep their brackets off)."""
    text = host.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


def host_allowed(allowed: Sequence[str], host: str) -> bool:
    name = normal_host(host)
    if not name:
        return False
    for entry in allowed:
        if entry.startswith("*."):
            if name.endswith(entry[1:]):
                return True
        elif name == entry:
            return True
    return False


def check_site_id(site_id: object, field_name: str = "site_id") -> str:
    if isinstance(site_id, str) and "/" in site_id:  # https://www.mysite.com/ pasted
        raise QueryError(field_name, "is a site's domain, not a URL: e.g. mysite.com")
    if not isinstance(site_id, str) or not SITE_ID.fullmatch(site_id):
        raise QueryError(
            field_name,
            "must be 1-100 characters of letters, digits, '.', '_', ':' and '-', "
            "starting with a letter or digit",
        )
    return site_id


def check_timezone(tz: object) -> str:
    if not isinstance(tz, str) or not tz or len(tz) > 64:
        raise QueryError("timezone", "must be an IANA time zone such as Europe/Berlin")
    return check_zone(tz, "timezone")


def check_hosts(hosts: object) -> tuple[str, ...]:
    """A list of hosts (or a comma-separated string), normalised; empty means the default."""
    if isinstance(hosts, str):
        hosts = [part for part in hosts.split(",") if part.strip()]
    if not isinstance(hosts, list | tuple):
        raise QueryError("allowed_hosts", "must be a list of host names")
    if len(hosts) > MAX_HOSTS:
        raise QueryError("allowed_hosts", f"may name at most {MAX_HOSTS} hosts")
    out: list[str] = []
    for item in hosts:
        if not isinstance(item, str):
            raise QueryError("allowed_hosts", "must be a list of host names")
        host = item.strip().lower().rstrip(".")
        if host.startswith("[") or (host.count(":") == 1 and not host.startswith("*")):
            host = normal_host(host)
        if not HOST.fullmatch(host) and not _is_ip(host):
            raise QueryError("allowed_hosts", f"{item[:80]!r} is not a host name")
        if host not in out:
            out.append(host)
    return tuple(out)


def _is_ip(text: str) -> bool:
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts):
        return True
    return ":" in text and all(c in "0123456789abcdef:" for c in text)


def check_retention(days: object) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_RETENTION_DAYS:
        raise QueryError(
            "retention_days", f"must be a whole number of days, 0 (keep) to {MAX_RETENTION_DAYS}"
        )
    return days


def check_flag(value: object, field_name: str) -> bool:
    if not isinstance(value, bool):
        raise QueryError(field_name, "must be true or false")
    return value


def check_settings(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise QueryError("settings", "must be a JSON object")
    return dict(value)


UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def check_umami_website_id(value: object) -> str:
    """A UUID, lowercased; ``None`` or "" clears the setting."""
    if value is None or value == "":
        return ""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not UUID.fullmatch(text):
        raise QueryError(
            "umami_website_id", "must be a UUID such as 4f9a2c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"
        )
    return text


SITE_FIELDS: Final = (
    "timezone",
    "allowed_hosts",
    "retention_days",
    "public",
    "settings",
    "umami_website_id",
)


def new_site(data: Mapping[str, Any], now_ms: int) -> Site:
    """A site from API or CLI input; ``QueryError`` naming the first bad field."""
    unknown = set(data) - {"site_id", *SITE_FIELDS}
    if unknown:
        raise QueryError(sorted(unknown)[0], "is not a site setting")
    site = Site(check_site_id(data.get("site_id")), created_at=now_ms)
    return changed_site(site, {k: v for k, v in data.items() if k != "site_id"})


def changed_site(site: Site, changes: Mapping[str, Any]) -> Site:
    """``site`` with ``changes`` applied (PATCH semantics: absent fields stay)."""
    unknown = set(changes) - set(SITE_FIELDS)
    if unknown:
        raise QueryError(sorted(unknown)[0], "is not a site setting")
    out = site
    if "timezone" in changes:
        out = replace(out, timezone=check_timezone(changes["timezone"]))
    if "allowed_hosts" in changes:
        hosts = check_hosts(changes["allowed_hosts"] or [])
        out = replace(out, allowed_hosts=() if hosts == _default(site.site_id) else hosts)
    if "retention_days" in changes:
        out = replace(out, retention_days=check_retention(changes["retention_days"]))
    if "public" in changes:
        out = replace(out, public=check_flag(changes["public"], "public"))
    if "settings" in changes:
        out = replace(out, settings=check_settings(changes["settings"]))
    if "umami_website_id" in changes:
        out = replace(out, umami_website_id=check_umami_website_id(changes["umami_website_id"]))
    return out


def _default(site_id: str) -> tuple[str, ...]:
    """The domain and its subdomains; an IP address alone (it has no subdomains)."""
    host = normal_host(site_id)
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return (host, f"*.{host}")
    return (host,)


def check_email(email: object) -> str:
    if (
        not isinstance(email, str)
        or not EMAIL.fullmatch(email.strip())
        or any(ord(c) < 32 or ord(c) == 127 for c in email)
    ):
        raise QueryError("email", "must be an email address")
    return email.strip().lower()


def check_unlike(site_id: str, registered: Iterable[str]) -> None:
    """``Conflict`` when a registered site's id differs from ``site_id`` by case only: a
    domain names one site whatever its case (``SHOP.example`` was a second ``shop.example``)."""
    folded = site_id.casefold()
    for other in registered:
        if other.casefold() == folded:
            raise Conflict("site_id", f"{other} is registered already (domains ignore case)")


def check_forgotten_user(user_id: object, field: str = "user_id") -> str:
    """The ``user_id`` a forget names: one a site sent. An empty or blank one is refused:
    events without a user_id have ``""``, so forgetting it deleted every anonymous visitor's
    events of the site."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise QueryError(field, "must name a user: events without one have an empty user_id")
    if len(user_id) > 256:
        raise QueryError(field, "may be at most 256 characters")
    return user_id


def check_role(role: object) -> str:
    if role not in ROLES:
        raise QueryError("role", f"must be one of {', '.join(ROLES)}")
    return str(role)


def check_scope(scope: object) -> str:
    if scope not in SCOPES:
        raise QueryError("scope", f"must be one of {', '.join(SCOPES)}")
    return str(scope)


def check_key_site(site_id: object, scope: str) -> str:
    if site_id == ALL_SITES:
        if scope != "admin":
            raise QueryError("site_id", "'*' (every site) is for admin keys only")
        return ALL_SITES
    return check_site_id(site_id)


def check_name(name: object, field_name: str = "name") -> str:
    if name is None:
        return ""
    if not isinstance(name, str) or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise QueryError(field_name, f"must be text of at most {MAX_NAME} characters")
    return name.strip()


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise QueryError("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password
