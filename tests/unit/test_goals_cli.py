"""``hitstream goals add | list | remove``: on a DuckDB file opened directly, and through the
control socket of a process that holds it (the ``data`` fixture of ``test_admin_cli``)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_admin_cli import data, run

__all__ = ["data"]


def test_goals_add_list_remove(data: Path) -> None:
    assert run(data, "sites", "add", "shop.io")[0] == 0
    code, out = run(data, "goals", "add", "shop.io", "--name", "Signup", "--event-name", "signup",
                    "--prop", "plan=pro", "--prop", "seats=2")  # fmt: skip
    assert code == 0, out
    assert "added Signup\tevent_name=signup\tplan=pro\tseats=2" in out
    code, out = run(data, "goals", "add", "shop.io", "--name", "Pricing", "--page", "/pricing*")
    assert code == 0, out
    code, out = run(data, "goals", "list", "shop.io")
    assert out.splitlines() == [
        "Pricing\tpage=/pricing*",
        "Signup\tevent_name=signup\tplan=pro\tseats=2",
    ]
    code, out = run(data, "goals", "add", "shop.io", "--name", "Pricing", "--page", "/p")
    assert code == 1 and "name" in out
    code, out = run(data, "goals", "remove", "shop.io", "Pricing")
    assert code == 0, out
    assert run(data, "goals", "list", "shop.io")[1].splitlines() == [
        "Signup\tevent_name=signup\tplan=pro\tseats=2"
    ]
    code, out = run(data, "goals", "remove", "shop.io", "Pricing")
    assert code == 1 and "no goal named" in out


def test_goals_refuse_bad_input_naming_the_field(data: Path) -> None:
    assert run(data, "sites", "add", "shop.io")[0] == 0
    code, out = run(data, "goals", "add", "shop.io", "--name", "X", "--page", "pricing")
    assert code == 1 and "error: page:" in out
    code, out = run(data, "goals", "add", "shop.io", "--name", "X")
    assert code == 1 and "error: page:" in out
    code, out = run(data, "goals", "add", "shop.io", "--name", "X", "--event-name", "e",
                    "--prop", "novalue")  # fmt: skip
    assert code == 1 and "props" in out
    code, out = run(data, "goals", "list", "nope.io")
    assert code == 1 and "site_id" in out
