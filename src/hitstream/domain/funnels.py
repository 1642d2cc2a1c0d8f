"""Funnels: ordered steps a visitor completes in order within one visit.

A step is one filter clause in the stats filter syntax (``page==/pricing``, ``goal==Signup``,
``event_name==signup``, ``prop:plan==pro`` ...). Within a visit (one ``session_id``), the
events that match the query (site, period, filters) are taken in order of ``timestamp`` then
``event_id``; the visit reaches step k when some events e1 < e2 < ... < ek (distinct, in that
order) match steps 1..k, and, with a ``window``, ek comes at most ``window`` minutes after e1.
``reached`` computes that depth; for each step the funnel counts the distinct visitors with a
visit that reached it. Conversion is from the first step (in %), drop-off the visitors lost
since the previous step. Events without a visit (``session_id`` empty) take no part.

Every store answers ``Store.funnel`` with these semantics; the memory store applies
``reached`` itself, the SQL stores translate it (see ``stores/sql/funnels.py``), and the
contract suite compares them on random data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hitstream.domain.errors import QueryError
from hitstream.domain.goals import check_goal_name
from hitstream.domain.stats import Filter, parse_filters

MIN_STEPS: Final = 2
MAX_STEPS: Final = 8
MAX_STEP_LENGTH: Final = 500
MAX_WINDOW_MINUTES: Final = 7 * 24 * 60
MAX_FUNNELS: Final = 100


@dataclass(frozen=True, slots=True)
class Funnel:
    """A saved funnel of a site: its steps as written (filter clauses) and the window."""

    name: str
    steps: tuple[str, ...]
    window: int | None = None
    """Minutes from the first step to the last, or None for the whole visit."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": list(self.steps), "window": self.window}


def parse_step(raw: object, field: str = "step") -> Filter:
    """One step: exactly one filter clause."""
    if not isinstance(raw, str) or not raw.strip():
        raise QueryError(field, "each step must be a filter clause such as page==/pricing")
    if len(raw) > MAX_STEP_LENGTH or ";" in raw:
        raise QueryError(field, f"{raw[:60]!r} must be one clause (no ';', <= 500 characters)")
    try:
        clauses = parse_filters(raw)
    except QueryError as exc:
        raise QueryError(field, exc.reason) from exc
    return clauses[0]


def parse_steps(raw: Sequence[object], field: str = "step") -> tuple[Filter, ...]:
    if not MIN_STEPS <= len(raw) <= MAX_STEPS:
        raise QueryError(field, f"a funnel has {MIN_STEPS} to {MAX_STEPS} steps, got {len(raw)}")
    return tuple(parse_step(step, field) for step in raw)


def check_window(raw: object, field: str = "window") -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_WINDOW_MINUTES:
        raise QueryError(field, f"must be whole minutes from 1 to {MAX_WINDOW_MINUTES}")
    return raw


def new_funnel(data: Mapping[str, Any]) -> Funnel:
    name = check_goal_name(data.get("name"))
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise QueryError("steps", "must be a list of filter clauses")
    parse_steps(steps, "steps")
    return Funnel(name, tuple(s.strip() for s in steps), check_window(data.get("window")))


def label(step: Filter) -> str:
    """How a step reads in an answer: the clause, written back."""
    return f"{step.property}{step.op}{'|'.join(step.values)}"


def reached(visit: Sequence[tuple[int, Sequence[bool]]], window_ms: int | None) -> int:
    """How many steps one visit reaches in order.

    ``visit``: its events in order, each as (timestamp, whether it matches step i, for every
    step). For every event that matches step 1, take the earliest later event matching step 2,
    then the earliest after that matching step 3, and so on (earliest is best: it leaves the
    most events for the next steps, and the earliest time for the window); the answer is the
    deepest such chain whose last event lies within the window of its first.
    """
    best = 0
    for i, (start, flags) in enumerate(visit):
        if not flags[0]:
            continue
        depth = 1
        for ts, later in visit[i + 1 :]:
            if depth == len(flags) or (window_ms is not None and ts - start > window_ms):
                break
            if later[depth]:
                depth += 1
        best = max(best, depth)
        if best == len(flags):
            break
    return best


def steps_answer(labels: Sequence[str], visitors: Sequence[int]) -> list[dict[str, Any]]:
    """The answer's ``steps``: visitors, conversion from the first step (%), drop-off."""
    first = visitors[0] if visitors else 0
    out: list[dict[str, Any]] = []
    for i, (text, count) in enumerate(zip(labels, visitors, strict=True)):
        rate = round(100 * count / first, 2) if first else 0.0
        out.append(
            {
                "label": text,
                "visitors": count,
                "conversion_rate": int(rate) if rate == int(rate) else rate,
                "dropoff": visitors[i - 1] - count if i else 0,
            }
        )
    return out
