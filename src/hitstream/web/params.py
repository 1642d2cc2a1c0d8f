"""A read endpoint refuses query parameters it does not take.

FastAPI ignores a parameter no endpoint declares, so ``perod=7d`` (a typo) answered the
default 30 days as if asked for them, and a script never learned. Routers whose endpoints
read their query through declared parameters add ``known_parameters``: any other name is a
400 naming it and listing those the endpoint takes; so is a parameter given twice (one of
the values would be ignored). ``auth`` (a shared link's token, read by the credential check
itself) is taken everywhere.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request

from hitstream.domain.errors import QueryError

ALWAYS: Final = frozenset({"auth"})
_TAKEN: dict[int, frozenset[str]] = {}
"""id(route) -> the query parameters it takes (routes live as long as the app)."""


def _names(dependant: Any) -> set[str]:
    """The query parameters of a route's dependant and of every dependency under it."""
    names = {param.alias for param in dependant.query_params}
    for below in dependant.dependencies:
        names |= _names(below)
    return names


def _taken(route: object) -> frozenset[str] | None:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found = _TAKEN.get(id(route))
    if found is None:
        found = _TAKEN[id(route)] = ALWAYS | frozenset(_names(dependant))
    return found


async def known_parameters(request: Request) -> None:
    taken = _taken(request.scope.get("route"))
    if taken is None:
        return
    unknown = sorted(set(request.query_params) - taken)
    if unknown:
        raise QueryError(
            unknown[0][:100],
            f"is not a parameter of {request.url.path}; it takes {', '.join(sorted(taken))}",
        )
    names = [name for name, _ in request.query_params.multi_items()]
    if len(names) > len(set(names)):  # period=day&period=7d: which one was meant?
        twice = sorted(name for name in set(names) if names.count(name) > 1)
        raise QueryError(twice[0][:100], "is given more than once")
