"""The gatekeeper: the site book and credentials follow the registry within ``refresh_s``
(a fake clock), an outage keeps the last copy, and the one check answers 401/403/404."""

from __future__ import annotations

import pytest

from hitstream.domain.access import Action, Kind
from hitstream.domain.credentials import token_hash
from hitstream.domain.sites import Login, Site, User
from hitstream.errors import AccessDenied, NotFound, StoreUnavailable
from hitstream.services.access import RECHECK_S, Credentials, Gatekeeper
from hitstream.services.accounts import Accounts
from hitstream.stores.memory import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


async def test_a_new_site_is_seen_after_at_most_refresh_s(store: MemoryStore) -> None:
    clock = Clock()
    gate = Gatekeeper(store, refresh_s=1.0, clock=clock)
    assert await gate.sites() == {}
    await store.add_site(Site("a.io"))
    clock.now = 0.5
    assert await gate.sites() == {}  # not asked again yet
    clock.now = 1.0
    assert list(await gate.sites()) == ["a.io"]


async def test_an_unknown_site_makes_the_gate_ask_again_soon(store: MemoryStore) -> None:
    """A site registered through another process a moment ago is found on its first use
    (the grpc role beside serve), yet unknown sites ask the registry at most every RECHECK_S."""
    clock = Clock()
    gate = Gatekeeper(store, refresh_s=1.0, clock=clock)
    assert await gate.site("a.io") is None
    await store.add_site(Site("a.io"))
    clock.now = RECHECK_S / 2
    assert await gate.site("a.io") is None  # asked a moment ago: not again yet
    clock.now = RECHECK_S
    found = await gate.site("a.io")
    assert found is not None and found.site_id == "a.io"  # well before refresh_s
    await store.add_site(Site("b.io"))
    assert await gate.site("b.io") is None  # the recheck just happened


async def test_an_outage_keeps_the_last_copy(store: MemoryStore) -> None:
    clock = Clock()
    gate = Gatekeeper(store, clock=clock)
    store.available = False
    with pytest.raises(StoreUnavailable):  # never read: nothing to go on
        await gate.sites()
    store.available = True
    await store.add_site(Site("a.io"))
    assert list(await gate.sites()) == ["a.io"]
    store.available = False
    clock.now = 5
    assert list(await gate.sites()) == ["a.io"]  # the store is down: the copy holds


async def test_keys_are_cached_until_the_registry_moves(store: MemoryStore) -> None:
    clock = Clock()
    gate = Gatekeeper(store, clock=clock)
    await store.add_site(Site("a.io"))
    token, key = await Accounts(store).create_key("a.io", "read")
    caller = await gate.resolve(Credentials(bearer=token))
    assert (caller.via, caller.principal.kind, caller.principal.sites) == (
        "bearer",
        Kind.KEY,
        frozenset({"a.io"}),
    )
    assert (await store.key_by_hash(token_hash(token))) is not None
    await store.revoke_key(key.key_id)
    assert (await gate.resolve(Credentials(bearer=token))).via == "bearer"  # cached, < 1 s
    clock.now = 1
    with pytest.raises(AccessDenied) as refused:
        await gate.resolve(Credentials(bearer=token))
    assert (refused.value.status, refused.value.field) == (401, "authorization")


async def test_cookies_links_and_the_metrics_token(store: MemoryStore) -> None:
    gate = Gatekeeper(store, metrics_token="metrics-secret", wall_ms=lambda: 1000)
    await store.add_site(Site("a.io"))
    await store.add_user(User("v@x.io", "viewer", ("a.io",)), "hash")
    await store.add_login(Login(token_hash("cookie"), "v@x.io", "csrf-1", expires_at=2000))
    caller = await gate.resolve(Credentials(cookie="cookie"))
    assert (caller.via, caller.csrf, caller.principal.name) == ("cookie", "csrf-1", "v@x.io")
    expired = Gatekeeper(store, wall_ms=lambda: 2000)
    assert (await expired.resolve(Credentials(cookie="cookie"))).via == "none"
    token, _ = await Accounts(store).create_link("a.io")
    assert (await gate.resolve(Credentials(share=token))).principal.kind == Kind.SHARE
    with pytest.raises(AccessDenied):
        await gate.resolve(Credentials(share="hs_share_nope"))
    metrics = await gate.resolve(Credentials(bearer="metrics-secret"))
    assert metrics.principal.kind == Kind.METRICS
    gate.require(metrics.principal, Action.READ_METRICS)


async def test_the_check_says_401_403_or_404(store: MemoryStore) -> None:
    gate = Gatekeeper(store)
    await store.add_site(Site("a.io"))
    await store.add_site(Site("pub.io", public=True))
    token, _ = await Accounts(store).create_key("a.io", "read")
    reader = (await gate.resolve(Credentials(bearer=token))).principal
    anonymous = (await gate.resolve(Credentials())).principal
    admin = (
        await gate.resolve(Credentials(bearer=(await Accounts(store).create_key("*", "admin"))[0]))
    ).principal
    assert (await gate.check(reader, Action.READ_STATS, "a.io")) == Site("a.io")
    assert (await gate.check(anonymous, Action.READ_STATS, "pub.io")) is not None
    for who, site, status in ((anonymous, "a.io", 401), (reader, "pub2.io", 403)):
        with pytest.raises(AccessDenied) as refused:
            await gate.check(who, Action.READ_STATS, site)
        assert refused.value.status == status
    with pytest.raises(NotFound):
        await gate.check(admin, Action.READ_STATS, "ghost.io")
    with pytest.raises(AccessDenied) as refused:
        gate.require(reader, Action.MANAGE_USERS)
    assert refused.value.status == 403
    assert [s.site_id for s in await gate.visible_sites(reader)] == ["a.io", "pub.io"]
