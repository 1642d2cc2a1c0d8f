"""The access policy as a table: principal x action x site (x public) -> allowed?

Every row is written out by hand from the rules in the issue (and the docstring of
``hitstream.domain.access``), not derived from the code under test; a final test checks that
the table covers every action for every kind of principal.
"""

from __future__ import annotations

import pytest

from hitstream.domain import access
from hitstream.domain.access import ANONYMOUS, Action, Kind, allowed, refusal, visible

A, B = "a.example", "b.example"
R, L, W = Action.READ_STATS, Action.READ_LIVE, Action.WRITE_EVENTS
MS, MK, ADD, MU = Action.MANAGE_SITE, Action.MANAGE_KEYS, Action.ADD_SITE, Action.MANAGE_USERS
MET, ALL, LS = Action.READ_METRICS, Action.READ_ALL, Action.LIST_SITES

ADMIN = access.user("root@x.io", "admin")
VIEWER = access.user("v@x.io", "viewer", {A})
READ_KEY = access.key("k1", A, "read")
WRITE_KEY = access.key("k2", A, "write")
ADMIN_KEY = access.key("k3", A, "admin")
GLOBAL_KEY = access.key("k4", "*", "admin")
SHARE = access.share("l1", A)
METRICS = access.metrics_reader()

# (principal, action, site, public site?, allowed?)
TABLE = [
    # admin user: everything, everywhere
    *[(ADMIN, act, s, False, True) for act in Action for s in (A, B)],
    # viewer of A: reads A only; manages nothing
    (VIEWER, R, A, False, True), (VIEWER, L, A, False, True),
    (VIEWER, R, B, False, False), (VIEWER, L, B, False, False),
    (VIEWER, W, A, False, False), (VIEWER, MS, A, False, False), (VIEWER, MK, A, False, False),
    (VIEWER, ADD, None, False, False), (VIEWER, MU, None, False, False),
    (VIEWER, MET, None, False, False), (VIEWER, ALL, None, False, False),
    (VIEWER, LS, None, False, True),
    # read key of A
    (READ_KEY, R, A, False, True), (READ_KEY, L, A, False, True),
    (READ_KEY, R, B, False, False), (READ_KEY, L, B, False, False),
    (READ_KEY, W, A, False, False), (READ_KEY, MS, A, False, False),
    (READ_KEY, MK, A, False, False), (READ_KEY, ADD, None, False, False),
    (READ_KEY, MU, None, False, False), (READ_KEY, MET, None, False, False),
    (READ_KEY, ALL, None, False, False), (READ_KEY, LS, None, False, True),
    # write key of A: sends events for A, reads nothing
    (WRITE_KEY, W, A, False, True), (WRITE_KEY, W, B, False, False),
    (WRITE_KEY, R, A, False, False), (WRITE_KEY, L, A, False, False),
    (WRITE_KEY, MS, A, False, False), (WRITE_KEY, MK, A, False, False),
    (WRITE_KEY, ADD, None, False, False), (WRITE_KEY, MU, None, False, False),
    (WRITE_KEY, MET, None, False, False), (WRITE_KEY, ALL, None, False, False),
    (WRITE_KEY, LS, None, False, True),
    # admin key of A: everything about A, nothing else
    (ADMIN_KEY, R, A, False, True), (ADMIN_KEY, L, A, False, True),
    (ADMIN_KEY, W, A, False, True), (ADMIN_KEY, MS, A, False, True),
    (ADMIN_KEY, MK, A, False, True),
    (ADMIN_KEY, R, B, False, False), (ADMIN_KEY, W, B, False, False),
    (ADMIN_KEY, MS, B, False, False), (ADMIN_KEY, MK, B, False, False),
    (ADMIN_KEY, ADD, None, False, False), (ADMIN_KEY, MU, None, False, False),
    (ADMIN_KEY, MET, None, False, False), (ADMIN_KEY, ALL, None, False, False),
    (ADMIN_KEY, LS, None, False, True),
    # admin key for every site: an admin
    *[(GLOBAL_KEY, act, s, False, True) for act in Action for s in (A, B)],
    # shared link of A: reads A
    (SHARE, R, A, False, True), (SHARE, L, A, False, True),
    (SHARE, R, B, False, False), (SHARE, L, B, False, False),
    (SHARE, W, A, False, False), (SHARE, MS, A, False, False), (SHARE, MK, A, False, False),
    (SHARE, ADD, None, False, False), (SHARE, MU, None, False, False),
    (SHARE, MET, None, False, False), (SHARE, ALL, None, False, False),
    (SHARE, LS, None, False, True),
    # metrics token: /metrics only
    (METRICS, MET, None, False, True),
    *[(METRICS, act, A, False, False) for act in (R, L, W, MS, MK)],
    (METRICS, ADD, None, False, False), (METRICS, MU, None, False, False),
    (METRICS, ALL, None, False, False), (METRICS, LS, None, False, False),
    # anonymous: public sites' stats and live channel, nothing else
    (ANONYMOUS, R, A, True, True), (ANONYMOUS, L, A, True, True),
    (ANONYMOUS, R, A, False, False), (ANONYMOUS, L, A, False, False),
    (ANONYMOUS, W, A, True, False), (ANONYMOUS, MS, A, True, False),
    (ANONYMOUS, MK, A, True, False), (ANONYMOUS, ADD, None, False, False),
    (ANONYMOUS, MU, None, False, False), (ANONYMOUS, MET, None, False, False),
    (ANONYMOUS, ALL, None, False, False), (ANONYMOUS, LS, None, False, False),
    # a public site is readable by any credential too, but never writable by it
    (WRITE_KEY, R, B, True, True), (VIEWER, R, B, True, True), (VIEWER, MS, B, True, False),
]  # fmt: skip


@pytest.mark.parametrize(("who", "action", "site", "public", "expected"), TABLE)
def test_the_access_table(
    who: access.Principal, action: Action, site: str | None, public: bool, expected: bool
) -> None:
    assert allowed(who, action, site, public=public) is expected


def test_the_table_covers_every_action_for_every_kind_of_principal() -> None:
    covered = {(who.kind, who.scope or who.role, act) for who, act, *_ in TABLE}
    principals = [ADMIN, VIEWER, READ_KEY, WRITE_KEY, ADMIN_KEY, SHARE, METRICS, ANONYMOUS]
    for who in principals:
        for act in Action:
            assert (who.kind, who.scope or who.role, act) in covered, (who, act)


def test_refusal_is_401_without_a_credential_and_403_with_one() -> None:
    assert refusal(ANONYMOUS) == 401
    for who in (VIEWER, READ_KEY, WRITE_KEY, SHARE, METRICS):
        assert refusal(who) == 403
    assert ANONYMOUS.kind == Kind.ANONYMOUS


def test_visible_lists_what_a_principal_reads() -> None:
    sites = [A, B, "c.example"]
    assert visible(VIEWER, sites, set()) == [A]
    assert visible(VIEWER, sites, {"c.example"}) == [A, "c.example"]
    assert visible(ADMIN, sites, set()) == sites
    assert visible(WRITE_KEY, sites, set()) == []
    assert visible(ANONYMOUS, sites, {B}) == [B]
