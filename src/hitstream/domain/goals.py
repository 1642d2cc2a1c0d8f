"""Goals: what counts as a conversion on a site, and which events complete one.

A goal belongs to a site and has a display name unique on it. It is either a pageview goal,
a path pattern (``page``) that the path of a pageview must match whole, or a custom-event
goal: an event that is not a pageview, named ``event_name``, and (optionally) carrying the
given property values (``props``, compared as ``prop_text`` of the event's value).

Path patterns: ``*`` stands for any characters but ``/``, ``**`` for any characters at all;
everything else is literal. ``/pricing*`` matches ``/pricing`` and ``/pricing-plans`` but not
``/pricing/faq``; ``/blog/**`` matches every page under ``/blog/``. ``pattern_regex`` writes
a pattern as a regular expression that Python, RE2 (DuckDB) and PostgreSQL read alike (it
uses no ``.``, no flags, only escaped punctuation, ``[^/]`` and groups), matched whole.

Stats read goals as values: the stats service resolves a query's goal names to their
definitions (``StatsQuery.goals``), and each store translates them, so ``goal==Signup`` means
the same in every adapter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hitstream.domain.errors import Conflict, QueryError
from hitstream.domain.events import EventType, ProcessedEvent

GOAL_PROPERTY: Final = "goal"
"""The filter property (``goal==Signup``) and breakdown property (``property=goal``)."""
GOAL_METRICS: Final = ("conversions", "conversion_rate")
MAX_GOALS: Final = 100
MAX_GOAL_NAME: Final = 100
MAX_PATTERN: Final = 500
MAX_GOAL_PROPS: Final = 10
_SPECIAL: Final = frozenset("\\.^$|?+()[]{}")
_PAGEVIEW: Final = EventType.PAGEVIEW.value


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    page: str = ""
    """The path pattern of a pageview goal ("" for a custom-event goal)."""
    event_name: str = ""
    """The event name of a custom-event goal ("" for a pageview goal)."""
    props: tuple[tuple[str, str], ...] = ()
    """Property values a custom event must carry, sorted by key."""

    @property
    def kind(self) -> str:
        return "page" if self.page else "event"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.page:
            out["page"] = self.page
        else:
            out["event_name"] = self.event_name
            out["props"] = dict(self.props)
        return out


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise QueryError(field, "must be a non-empty string")
    if len(value) > limit:
        raise QueryError(field, f"must be at most {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise QueryError(field, "must not contain control characters")
    return value


def check_new_name(name: str, taken: Iterable[str], what: str = "goal") -> None:
    """A new goal's (or saved funnel's) name must differ from the others by more than case:
    ``goal==signup`` beside ``goal==Signup`` reads as a typo. ``Conflict`` (409) naming it."""
    folded = name.casefold()
    for other in taken:
        if other.casefold() == folded:
            raise Conflict("name", f"a {what} named {other!r} exists already")


def check_goal_name(value: object, field: str = "name") -> str:
    """A display name: it appears in filters (``goal==A|B;page==/``), so no ``|`` or ``;``,
    and no surrounding spaces."""
    name = _text(value, field, MAX_GOAL_NAME)
    if "|" in name or ";" in name:
        raise QueryError(field, "must not contain '|' or ';'")
    if name != name.strip():
        raise QueryError(field, "must not start or end with a space")
    return name


def check_pattern(value: object, field: str = "page") -> str:
    pattern = _text(value, field, MAX_PATTERN)
    if not pattern.startswith("/"):
        raise QueryError(field, "must be a path pattern starting with '/'")
    if "***" in pattern:
        raise QueryError(field, "'*' matches within a segment and '**' anything; '***' is neither")
    if any(c.isspace() for c in pattern):
        raise QueryError(field, "must not contain spaces")
    return pattern


def pattern_regex(pattern: str) -> str:
    """The regular expression (to match whole) of a path pattern; see the module."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            parts.append("(?:[^/]|/)*")
            i += 2
            continue
        if char == "*":
            parts.append("[^/]*")
        elif char in _SPECIAL:
            parts.append("\\" + char)
        else:
            parts.append(char)
        i += 1
    return "".join(parts)


def path_matches(pattern: str, path: str) -> bool:
    return re.fullmatch(pattern_regex(pattern), path) is not None


def new_goal(data: Mapping[str, Any]) -> Goal:
    """A goal from an API body or CLI flags; ``QueryError`` naming the field if invalid."""
    name = check_goal_name(data.get("name"))
    page, event_name, props = data.get("page"), data.get("event_name"), data.get("props")
    if (page is None) == (event_name is None):
        raise QueryError("page", "give either page (a path pattern) or event_name")
    if page is not None:
        if props:
            raise QueryError("props", "only a custom-event goal (event_name) takes props")
        return Goal(name, page=check_pattern(page))
    event = _text(event_name, "event_name", 120)
    if event == _PAGEVIEW:
        raise QueryError(
            "event_name",
            "pageviews complete page goals: give page instead (a path pattern, /** for any page)",
        )
    pairs: list[tuple[str, str]] = []
    if props is not None:
        if not isinstance(props, Mapping):
            raise QueryError("props", "must be an object of property names to values")
        if len(props) > MAX_GOAL_PROPS:
            raise QueryError("props", f"at most {MAX_GOAL_PROPS} properties")
        for key, value in props.items():
            _text(key, "props", 64)
            if not isinstance(value, str) or len(value) > 500:
                raise QueryError("props", f"the value of {key!r} must be a string (<= 500)")
            if "\x00" in value:  # no store compares it (PostgreSQL refuses the text)
                raise QueryError("props", f"the value of {key!r} must not contain a NUL character")
            pairs.append((key, value))
    return Goal(name, event_name=event, props=tuple(sorted(pairs)))


def completes(goal: Goal, event: ProcessedEvent) -> bool:
    """Whether the event completes the goal (``prop_text`` of absent props is ``""``)."""
    return completes_fields(goal, event.type, event.name, event.path, event.props)


def completes_fields(goal: Goal, type_: object, name: object, path: object, props: object) -> bool:
    """``completes`` of an event given by its fields (a live feed's event is a dict)."""
    if goal.page:
        return type_ == _PAGEVIEW and isinstance(path, str) and path_matches(goal.page, path)
    if type_ == _PAGEVIEW or name != goal.event_name:
        return False
    from hitstream.domain.measures import prop_text  # measures imports stats, stats imports us

    found = props if isinstance(props, Mapping) else {}
    return all(prop_text(found.get(key)) == value for key, value in goal.props)


GOAL_OPS: Final = "goal takes == or != and goal names (goal==Signup, goal!=A|B), no other operator"
"""What a ``goal`` filter clause with another operator is told."""


def named(goals: Iterable[Goal], names: Sequence[str], field: str = "filters") -> list[Goal]:
    """The goals of these names; ``QueryError`` naming ``field`` for one that is not defined."""
    by_name = {g.name: g for g in goals}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise QueryError(field, f"unknown goal {missing[0]!r}; add it to the site's goals first")
    return [by_name[n] for n in dict.fromkeys(names)]


def passes(op: str, names: Sequence[str], goals: Iterable[Goal], event: ProcessedEvent) -> bool:
    """A ``goal`` filter clause: ``==`` completes one of the named goals, ``!=`` none."""
    hit = any(completes(goal, event) for goal in named(goals, names))
    return hit if op == "==" else not hit
