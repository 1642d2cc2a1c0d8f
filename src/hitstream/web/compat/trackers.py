"""What the Plausible and Umami routes share: read a tracker's small JSON body, hand the
canonical events it maps to to the collector, and name refusals in the tracker's words.

There is no second pipeline: the translated events go through ``Collector.collect``, the very
call behind ``POST /api/v1/events`` (validation, registered sites, allowed hosts and
``Origin``, rate limits, the durable append before the answer). A refusal the collector
names by a canonical field (``site_id``, ``url``) is renamed to the field the tracker sent
(``d``, ``payload.website``), so a developer reading the answer finds it in their request.
Every refusal is counted: whole requests by ``Collector.reject_request`` under a fixed label
(``plausible: body`` ...), single events by the collector itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec
from fastapi import Request

from hitstream.domain.access import ANONYMOUS
from hitstream.errors import AccessDenied, LogUnavailable
from hitstream.services.collector import JSON_TYPES, Collector, CollectResult
from hitstream.services.json_body import BodyProblem, decode
from hitstream.web.auth import credentials_of
from hitstream.web.collect import client_ip, read_capped_body
from hitstream.web.deps import services_of
from hitstream.web.encoding import EncodingProblem, inflate

_ENCODER: Final = msgspec.json.Encoder()


class Refused(Exception):
    """A tracker's request refused whole: the status, the field as the tracker names it, the
    reason. ``label`` is what it is counted as (a fixed phrase, never input)."""

    def __init__(self, status: int, field: str, reason: str, label: str = "") -> None:
        super().__init__(f"{field}: {reason}")
        self.status = status
        self.field = field
        self.reason = reason
        self.label = label or field


def collector_of(request: Request) -> Collector:
    collector = services_of(request).collector
    if collector is None:  # the routes are mounted only with the collector role
        raise RuntimeError("this process built no collector, yet serves a tracker's endpoint")
    return collector


def refuse(
    collector: Collector, tracker: str, problem: Refused, site_id: str = ""
) -> CollectResult:
    """The answer to a request refused whole, counted as ``{tracker}: {label}`` under the
    registered site it named (``site_id``; ``""`` when none could be read: decision 0051),
    so the site's own quality answer shows it."""
    result = CollectResult(
        problem.status,
        error={"field": problem.field, "reason": problem.reason},
        label=f"{tracker}: {problem.label}",
    )
    return collector.reject_request(result, site_id)


async def registered(collector: Collector, candidates: Sequence[str]) -> str:
    """The first of ``candidates`` that is a registered site, else ``""`` (a refusal is
    counted under a site only when it is one: site ids in bad requests are input)."""
    known = await collector.sites.sites() if collector.sites is not None else {}
    return next((c for c in candidates if c in known), "")


async def read_object(request: Request, collector: Collector) -> dict[str, Any]:
    """The body as a JSON object, at most one event's size; ``Refused`` otherwise."""
    cap = collector.limits.max_body_bytes
    try:
        body = await read_capped_body(request, cap)
        if body is not None:
            body = inflate(body, request.headers.get("content-encoding", ""), cap)
    except EncodingProblem as exc:
        raise Refused(exc.status, exc.field, exc.reason, "body") from None
    if body is None:
        raise Refused(413, "body", f"is larger than {cap} bytes")
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise Refused(415, "content-type", "must be application/json or text/plain")
    try:
        data = decode(body)
    except BodyProblem as exc:
        raise Refused(400, "body", exc.reason) from None
    if not isinstance(data, dict):
        raise Refused(400, "body", "must be a JSON object")
    return data


async def deliver(
    request: Request,
    collector: Collector,
    events: Sequence[Mapping[str, object]],
    names: Mapping[str, str],
) -> CollectResult:
    """Collect the canonical ``events`` as ``POST /api/v1/events`` would; ``names`` maps a
    canonical field to the tracker's (refusals are renamed with it).

    A log that cannot store gives 503 (nothing was acknowledged)."""
    services = services_of(request)
    principal = ANONYMOUS
    if request.headers.get("authorization") and services.gate is not None:
        try:  # a server sending with a key, as on /api/v1/events
            principal = (await services.gate.resolve(credentials_of(request))).principal
        except AccessDenied as exc:
            error = {"field": exc.field, "reason": exc.reason}
            return collector.reject_request(CollectResult(401, error=error))
    try:
        result = await collector.collect(
            _ENCODER.encode(list(events)),
            "application/json",
            client_ip(request, services.trusted_proxies),
            request.headers.get("user-agent", ""),
            origin=request.headers.get("origin", ""),
            principal=principal,
        )
    except LogUnavailable:
        collector.reject_request(
            CollectResult(status=503, error={"field": "log", "reason": "unavailable"})
        )
        error = {"field": "log", "reason": "event log unavailable; nothing was stored"}
        return CollectResult(503, error=error, retry_after=5)
    return renamed(result, names)


def renamed(result: CollectResult, names: Mapping[str, str]) -> CollectResult:
    """``result`` with each refusal's canonical field named as the tracker names it."""

    def rename(error: Mapping[str, Any]) -> dict[str, Any]:
        field = str(error.get("field", ""))
        base, dot, rest = field.partition(".")
        if base in names:
            field = names[base] + (dot + rest if dot else "")
        return {**error, "field": field}

    for item in result.rejected:
        errors = item.get("errors")
        if isinstance(errors, list):
            item["errors"] = [rename(e) for e in errors]
    if result.error is not None:
        result.error = {k: str(v) for k, v in rename(result.error).items()}
    return result
