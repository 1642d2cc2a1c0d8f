"""Alert rules as values, read from JSON with named errors, and the state machine they follow.

A rule compares one metric of ``hitstream.domain.stats`` over a trailing window with a
threshold, for one site or every site (``"*"``). ``step`` is the whole life of one (rule,
site) pair and is pure, so it is tested with plain integers for time:

- ``ok`` → ``pending`` when the condition starts to hold (``for_s`` > 0), → ``firing`` at once
  when ``for_s`` is 0. A condition must hold ``for_s`` seconds before it fires: a single
  bad sample never pages anybody.
- ``pending`` → ``firing`` (one ``firing`` transition) once it has held ``for_s`` seconds;
  → ``ok`` silently if it clears before that.
- ``firing`` stays firing while the condition holds; it notifies again (``repeat``) at most
  once every ``repeat_s`` seconds, never when ``repeat_s`` is 0.
- ``firing`` → ``ok`` with one ``resolved`` transition as soon as the condition clears.

"No data" needs no special kind: ``pageviews < 1 over 900 s`` fires for a site whose tracker
stopped sending, because a window without events measures 0 (see ``domain/stats.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from hitstream.domain.errors import QueryError
from hitstream.domain.stats import METRICS, parse_filters

ALL_SITES: Final = "*"
OPS: Final = (">", ">=", "<", "<=")
SEVERITIES: Final = ("info", "warning", "critical")
MAX_WINDOW_S: Final = 31 * 86_400
MAX_SITE_ID: Final = 100
MAX_NAME: Final = 100
MAX_TEXT: Final = 500
_FIELDS: Final = (
    "name",
    "site_id",
    "metric",
    "window_s",
    "op",
    "threshold",
    "filters",
    "for_s",
    "repeat_s",
    "severity",
    "description",
)


@dataclass(frozen=True, slots=True)
class AlertRule:
    """``metric op threshold`` over the last ``window_s`` seconds, for ``site_id`` or all."""

    name: str
    metric: str
    op: str
    threshold: float
    window_s: float
    site_id: str = ALL_SITES
    filters: str = ""
    """Stats API filter clauses (``page==/checkout;country!=DE``), stored canonical."""
    for_s: float = 0.0
    repeat_s: float = 0.0
    severity: str = "warning"
    description: str = ""

    def holds(self, value: float) -> bool:
        """Whether ``value`` breaks the rule (NaN never does)."""
        if self.op == ">":
            return value > self.threshold
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<":
            return value < self.threshold
        return value <= self.threshold

    def applies_to(self, site_id: str) -> bool:
        return self.site_id in (ALL_SITES, site_id)

    def condition(self) -> str:
        """``pageviews < 1 over 15m (page==/checkout)``: the rule in one line."""
        text = f"{self.metric} {self.op} {number(self.threshold)} over {duration(self.window_s)}"
        return f"{text} ({self.filters})" if self.filters else text

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


class Status(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


class Change(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where one (rule, site) pair stands; ``OK`` is the state of every pair never seen."""

    status: Status = Status.OK
    since_ms: int = 0
    """When the condition started to hold (pending and firing)."""
    notified_ms: int = 0
    """When the last ``firing`` notification went out."""
    value: float = 0.0


OK: Final = AlertState()


@dataclass(frozen=True, slots=True)
class Transition:
    """A change worth telling people about: a rule started firing, fired again, or cleared."""

    change: Change
    value: float
    at_ms: int
    since_ms: int
    repeat: bool = False
    gone: bool = False
    """Resolved because the site is no longer registered (a ``"*"`` rule stops covering it),
    not because the condition cleared."""


def step(
    rule: AlertRule, state: AlertState, value: float, now_ms: int
) -> tuple[AlertState, Transition | None]:
    """The next state of a (rule, site) pair after measuring ``value`` at ``now_ms``."""
    if not rule.holds(value):
        if state.status is Status.FIRING:
            resolved = Transition(Change.RESOLVED, value, now_ms, state.since_ms)
            return OK, resolved
        return OK, None
    if state.status is Status.OK:
        state = AlertState(Status.PENDING, since_ms=now_ms, value=value)
    if state.status is Status.PENDING:
        if now_ms - state.since_ms < rule.for_s * 1000:
            return AlertState(Status.PENDING, state.since_ms, value=value), None
        fired = Transition(Change.FIRING, value, now_ms, state.since_ms)
        return AlertState(Status.FIRING, state.since_ms, now_ms, value), fired
    due = rule.repeat_s > 0 and now_ms - state.notified_ms >= rule.repeat_s * 1000
    if due:
        again = Transition(Change.FIRING, value, now_ms, state.since_ms, repeat=True)
        return AlertState(Status.FIRING, state.since_ms, now_ms, value), again
    return AlertState(Status.FIRING, state.since_ms, state.notified_ms, value), None


@dataclass(frozen=True, slots=True)
class Alert:
    """One transition of one rule on one site: what the dashboard, the logs and chat get."""

    site_id: str
    rule: AlertRule
    transition: Transition

    @property
    def state(self) -> str:
        return self.transition.change.value

    def message(self) -> str:
        rule, value = self.rule, number(self.transition.value)
        if self.transition.gone:
            text = "the site is no longer registered: the rule stopped watching it"
        elif self.transition.change is Change.RESOLVED:
            text = f"{rule.metric} is {value} again: no longer {rule.condition()}"
        else:
            text = f"{rule.condition()}: {rule.metric} is {value}"
        return f"{text}. {rule.description}" if rule.description else text

    def text(self) -> str:
        """One line for chat: ``[FIRING] warning · tracker-down on a.io: ...``."""
        label = "RESOLVED" if self.transition.change is Change.RESOLVED else "FIRING"
        again = " (still)" if self.transition.repeat else ""
        head = f"[{label}]{again} {self.rule.severity} · {self.rule.name} on {self.site_id}"
        return f"{head}: {self.message()}"

    def as_message(self) -> dict[str, Any]:
        """The ``alert`` frame published on ``alerts:<site_id>``; times in epoch ms."""
        rule = self.rule
        return {
            "type": "alert",
            "site_id": self.site_id,
            "rule": rule.name,
            "state": self.state,
            "severity": rule.severity,
            "message": self.message(),
            "metric": rule.metric,
            "op": rule.op,
            "value": self.transition.value,
            "threshold": rule.threshold,
            "window_s": rule.window_s,
            "filters": rule.filters,
            "since": self.transition.since_ms,
            "at": self.transition.at_ms,
            "repeat": self.transition.repeat,
            "gone": self.transition.gone,
        }


@dataclass(frozen=True, slots=True)
class Probe:
    """One aggregate query that answers every rule sharing its site, window and filters."""

    site_id: str
    window_s: float
    filters: str


def plan(rules: Iterable[AlertRule], sites: Iterable[str]) -> dict[Probe, list[AlertRule]]:
    """Group the (rule, site) pairs to evaluate by the query that measures them.

    ``"*"`` rules cover ``sites`` (empty ids skipped); a rule naming a site always covers
    it, even one that never sent an event, so that its ``< 1`` rules can fire.
    """
    known = [site for site in dict.fromkeys(sites) if site]
    groups: dict[Probe, list[AlertRule]] = {}
    for rule in rules:
        targets = known if rule.site_id == ALL_SITES else [rule.site_id]
        for site in targets:
            groups.setdefault(Probe(site, rule.window_s, rule.filters), []).append(rule)
    return groups


# -- reading rules ------------------------------------------------------------------------


def parse_rules(text: str) -> list[AlertRule]:
    """Rules from JSON text: a list of rule objects, or ``{"rules": [...]}``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise QueryError("rules", f"is not valid JSON ({exc})") from exc
    if isinstance(data, dict) and set(data) == {"rules"}:
        data = data["rules"]
    return rules_from(data)


def rules_from(data: object) -> list[AlertRule]:
    """Rules from decoded JSON; raise ``QueryError`` naming the first bad field."""
    if not isinstance(data, list):
        raise QueryError("rules", "must be a JSON list of rule objects")
    rules = [rule_from(item, f"rules[{i}]") for i, item in enumerate(data)]
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise QueryError(f"rules[{i}].name", f"{rule.name!r} is used by an earlier rule")
        seen.add(rule.name)
    return rules


def rule_from(data: object, where: str = "rule") -> AlertRule:
    if not isinstance(data, Mapping):
        raise QueryError(where, "must be a JSON object")
    for key in data:
        if key not in _FIELDS:
            raise QueryError(f"{where}.{key}", f"is not a rule field; use {', '.join(_FIELDS)}")
    op = _choice(data, where, "op", OPS, None)
    filters = _text(data, where, "filters", "", MAX_TEXT, empty=True)
    try:
        parse_filters(filters)
    except QueryError as exc:
        raise QueryError(f"{where}.filters", exc.reason) from exc
    return AlertRule(
        name=_text(data, where, "name", None, MAX_NAME),
        site_id=_text(data, where, "site_id", ALL_SITES, MAX_SITE_ID),
        metric=_choice(data, where, "metric", METRICS, None),
        window_s=_seconds(data, where, "window_s", None, low=1, high=MAX_WINDOW_S),
        op=op,
        threshold=_number(data, where, "threshold"),
        filters=";".join(part.strip() for part in filters.split(";") if part.strip()),
        for_s=_seconds(data, where, "for_s", 0.0, low=0, high=MAX_WINDOW_S),
        repeat_s=_seconds(data, where, "repeat_s", 0.0, low=0, high=MAX_WINDOW_S),
        severity=_choice(data, where, "severity", SEVERITIES, "warning"),
        description=_text(data, where, "description", "", MAX_TEXT, empty=True),
    )


def _get(data: Mapping[str, object], where: str, key: str, default: object) -> object:
    if key in data:
        return data[key]
    if default is None:
        raise QueryError(f"{where}.{key}", "is required")
    return default


def _text(
    data: Mapping[str, object],
    where: str,
    key: str,
    default: str | None,
    limit: int,
    *,
    empty: bool = False,
) -> str:
    value = _get(data, where, key, default)
    if not isinstance(value, str):
        raise QueryError(f"{where}.{key}", "must be a string")
    value = value.strip()
    if not value and not empty:
        raise QueryError(f"{where}.{key}", "must not be empty")
    if len(value) > limit:
        raise QueryError(f"{where}.{key}", f"is longer than {limit} characters")
    return value


def _choice(
    data: Mapping[str, object],
    where: str,
    key: str,
    choices: tuple[str, ...],
    default: str | None,
) -> str:
    value = _get(data, where, key, default)
    if value not in choices:
        raise QueryError(f"{where}.{key}", f"must be one of {', '.join(choices)}; got {value!r}")
    assert isinstance(value, str)
    return value


def _number(data: Mapping[str, object], where: str, key: str) -> float:
    value = _get(data, where, key, None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueryError(f"{where}.{key}", "must be a number")
    if not math.isfinite(value):
        raise QueryError(f"{where}.{key}", "must be a finite number")
    return float(value)


def _seconds(
    data: Mapping[str, object],
    where: str,
    key: str,
    default: float | None,
    *,
    low: float,
    high: float,
) -> float:
    value = _get(data, where, key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise QueryError(f"{where}.{key}", "must be a number of seconds")
    if not low <= value <= high:
        raise QueryError(f"{where}.{key}", f"must be between {low} and {high} seconds")
    return float(value)


# -- words --------------------------------------------------------------------------------


def number(value: float) -> str:
    """``3`` for 3.0, ``12.35`` for 12.3456, ``0.00123``: what people read in an alert."""
    value = float(value)  # an int has no is_integer() before Python 3.12
    if value.is_integer():
        return str(int(value))
    if abs(value) < 1:
        return f"{value:.3g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def duration(seconds: float) -> str:
    """``15m``, ``1h``, ``90s``, ``2d``: the largest unit that divides ``seconds`` exactly."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{number(seconds)}s"
