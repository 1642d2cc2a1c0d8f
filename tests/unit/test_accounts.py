"""Accounts: setup links, passwords (argon2id), throttled logins, login links, keys."""

from __future__ import annotations

import pytest

from hitstream.domain.credentials import token_hash
from hitstream.domain.sites import Site
from hitstream.errors import AccessDenied, QueryError, RateLimited
from hitstream.services.accounts import Accounts
from hitstream.stores.memory import MemoryStore

PASSWORD = "a long enough password"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_every_printed_setup_link_works_until_an_admin_exists() -> None:
    store = MemoryStore()
    first, second = Accounts(store), Accounts(store)  # two web processes, one database
    one, two = await first.setup_token(), await second.setup_token()
    cookie, login = await second.complete_setup(one, "root@x.io", PASSWORD)
    assert login.email == "root@x.io" and cookie.startswith("hs_login_")
    assert (await store.get_user("root@x.io")) is not None
    with pytest.raises(AccessDenied):  # set up: the other link is refused
        await first.complete_setup(two, "other@x.io", PASSWORD)
    assert [u.email for u in await store.users()] == ["root@x.io"]


async def test_passwords_are_argon2id_and_logins_are_throttled() -> None:
    store, clock = MemoryStore(), Clock()
    accounts = Accounts(store, clock=clock)
    await accounts.add_user("Ana@X.io", "admin", [], PASSWORD)
    stored = await store.get_user("ana@x.io")
    assert stored is not None and stored[1].startswith("$argon2id$") and PASSWORD not in stored[1]
    cookie, login = await accounts.login("ana@x.io", PASSWORD, "1.2.3.4")
    assert login.token_hash == token_hash(cookie) and login.csrf
    for _ in range(3):
        with pytest.raises(AccessDenied):
            await accounts.login("ana@x.io", "wrong password!", "1.2.3.4")
    with pytest.raises(RateLimited) as waited:
        await accounts.login("ana@x.io", PASSWORD, "5.6.7.8")  # the account waits too
    assert waited.value.retry_after == 1
    clock.now = 1.0
    await accounts.login("ana@x.io", PASSWORD, "5.6.7.8")  # after the wait: in again
    with pytest.raises(AccessDenied):
        await accounts.login("nobody@x.io", PASSWORD, "9.9.9.9")
    with pytest.raises(QueryError) as short:
        await accounts.add_user("b@x.io", "viewer", [], "short")
    assert short.value.field == "password"


async def test_a_right_password_does_not_clear_the_address_and_a_reset_ends_logins() -> None:
    """Someone holding one account must not reset their address's waits by logging into it
    between guesses at others' passwords; a new password ends the user's logins."""
    store, clock = MemoryStore(), Clock()
    accounts = Accounts(store, clock=clock)
    await accounts.add_user("own@x.io", "viewer", [], PASSWORD)
    await accounts.add_user("target@x.io", "admin", [], PASSWORD)
    for victim in ("target@x.io", "a@x.io", "b@x.io"):  # three wrong guesses from one address
        with pytest.raises(AccessDenied):
            await accounts.login(victim, "guess number one", "6.6.6.6")
    clock.now = 1.0
    await accounts.login("own@x.io", PASSWORD, "6.6.6.6")  # their own account: in
    with pytest.raises(AccessDenied):  # the fourth failure of the address ...
        await accounts.login("c@x.io", "guess number two", "6.6.6.6")
    with pytest.raises(RateLimited):  # ... makes it wait (its count was cleared: no wait)
        await accounts.login("d@x.io", "guess number three", "6.6.6.6")
    cookie, _ = await accounts.login("target@x.io", PASSWORD, "1.1.1.1")
    assert await accounts.login_of(cookie) is not None
    assert await accounts.set_password("target@x.io", "a brand new password")
    assert await accounts.login_of(cookie) is None  # a reset locks out an old cookie


async def test_a_user_may_only_be_given_registered_sites() -> None:
    """Access to a domain nobody registered would come with whoever registers it later."""
    store = MemoryStore()
    accounts = Accounts(store)
    await store.add_site(Site("a.io"))
    with pytest.raises(QueryError) as refused:
        await accounts.add_user("v@x.io", "viewer", ["a.io", "nope.io"], PASSWORD)
    assert refused.value.field == "sites" and "nope.io" in refused.value.reason
    assert await store.get_user("v@x.io") is None
    user = await accounts.add_user("v@x.io", "viewer", ["a.io"], PASSWORD)
    assert user.sites == ("a.io",)
    with pytest.raises(QueryError) as changed:  # nor given one later (PATCH /api/v1/users)
        await accounts.check_sites(["a.io", "later.io"])
    assert changed.value.field == "sites"


async def test_login_links_and_keys() -> None:
    store = MemoryStore()
    accounts = Accounts(store)
    await store.add_site(Site("a.io"))
    token = await accounts.login_link("demo@x.io", ["a.io"])
    made = await accounts.use_login_link(token)
    assert made is not None and made[1].email == "demo@x.io"
    assert await accounts.use_login_link(token) is not None  # not one-time: until it expires
    with pytest.raises(AccessDenied):  # the demo viewer has no password
        await accounts.login("demo@x.io", "", "1.1.1.1")
    key, record = await accounts.create_key("a.io", "write", "server")
    assert record.key_hash == token_hash(key) and key.startswith(record.prefix)
    for site, scope, field in (
        ("nope.io", "read", "site_id"),
        ("*", "read", "site_id"),
        ("a.io", "x", "scope"),
    ):
        with pytest.raises(QueryError) as refused:
            await accounts.create_key(site, scope)
        assert refused.value.field == field
