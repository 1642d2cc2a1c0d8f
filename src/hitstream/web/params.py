"""A read endpoint refuses query parameters it does not take.

FastAPI ignores a parameter no endpoint declares, so ``perod=7d`` (a typo) answered the
default 30 days as if asked for them, and a script never learned. Routers whose endpoints
read their query through declared parameters add ``known_parameters``: any other name is a
400 naming it and listing those the endpoint takes; so is a parameter given twice (one of
the values would be ignored). ``auth`` (a shared link's token, read by the credential check
itself) is taken everywhere.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Final, Union, get_args, get_origin

from fastapi import Request

from hitstream.domain.errors import QueryError

ALWAYS: Final = frozenset({"auth"})
_TAKEN: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
"""id(route) -> the query parameters it takes, and those of them that take a list (given once
per item: ``step``); routes live as long as the app."""
_LISTS: Final = (list, tuple, set, frozenset)


def _is_list(annotation: object) -> bool:
    """Whether a parameter's annotation takes a list (``list[str] | None`` too)."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_is_list(arg) for arg in get_args(annotation))
    return origin in _LISTS or annotation in _LISTS


def _names(dependant: Any) -> tuple[set[str], set[str]]:
    """The query parameters of a route's dependant and of every dependency under it, and
    those of them that take a list."""
    names = {param.alias for param in dependant.query_params}
    lists = {
        param.alias for param in dependant.query_params if _is_list(param.field_info.annotation)
    }
    for below in dependant.dependencies:
        more, more_lists = _names(below)
        names |= more
        lists |= more_lists
    return names, lists


def _taken(route: object) -> tuple[frozenset[str], frozenset[str]] | None:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found = _TAKEN.get(id(route))
    if found is None:
        names, lists = _names(dependant)
        found = _TAKEN[id(route)] = (ALWAYS | frozenset(names), frozenset(lists))
    return found


class UnknownParameter(QueryError):
    """A query parameter the endpoint does not take (or takes once): named in the answer,
    counted under one label (the name is the sender's text)."""


async def known_parameters(request: Request) -> None:
    found = _taken(request.scope.get("route"))
    if found is None:
        return
    taken, lists = found
    unknown = sorted(set(request.query_params) - taken)
    if unknown:
        raise UnknownParameter(
            unknown[0][:100],
            f"is not a parameter of {request.url.path}; it takes {', '.join(sorted(taken))}",
        )
    names = [name for name, _ in request.query_params.multi_items() if name not in lists]
    if len(names) > len(set(names)):  # period=day&period=7d: which one was meant?
        twice = sorted(name for name in set(names) if names.count(name) > 1)
        raise UnknownParameter(twice[0][:100], "is given more than once")
