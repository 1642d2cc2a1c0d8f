"""Test helpers for sites and credentials: registered sites for a collector, and an admin key
for an app, made through the real registry and accounts (no switch in production code)."""

from __future__ import annotations

from collections.abc import Mapping

from hitstream.domain.sites import Site
from hitstream.services.accounts import Accounts
from hitstream.stores.registry import Registry


class Sites:
    """A fixed site book (what a collector asks): these sites, default settings."""

    def __init__(self, *site_ids: str, **sites: Site) -> None:
        self._sites = {site_id: Site(site_id) for site_id in site_ids}
        self._sites.update(sites)

    async def sites(self) -> Mapping[str, Site]:
        return self._sites

    async def forgotten_users(self) -> Mapping[tuple[str, str], int]:
        return {}


async def register(registry: Registry, *site_ids: str) -> None:
    for site_id in site_ids:
        if await registry.get_site(site_id) is None:
            await registry.add_site(Site(site_id))


async def admin_key(registry: Registry) -> str:
    """A new admin key for every site (``*``): what a test's client sends as a bearer."""
    token, _ = await Accounts(registry).create_key("*", "admin", "tests")
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
