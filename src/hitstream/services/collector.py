"""The collector: decode, validate, stamp, append to the event log, answer. Nothing more.

Thin on purpose: enrichment, sessions and aggregation belong to the processor. The raw IP is
used here twice (visitor hash, country) and goes no further: it is never appended to the log.
``collect`` returns a ``CollectResult`` for every input; only ``LogUnavailable`` escapes (the
web layer answers 503 and nothing was acknowledged).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import msgspec

from hitstream.domain.events import DEFAULT_LIMITS, AcceptedEvent, Limits, Problem
from hitstream.domain.validation import KNOWN_FIELDS, validate_event
from hitstream.domain.visitors import event_id as new_event_id
from hitstream.domain.visitors import user_hash, visitor_hash
from hitstream.log.base import EventLog
from hitstream.metrics import Metrics
from hitstream.salts.base import SaltKeeper
from hitstream.services.json_body import BodyProblem
from hitstream.services.json_body import decode as decode_json

JSON_TYPES = ("application/json", "text/plain", "")
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
_ENCODER = msgspec.json.Encoder()


@dataclass(slots=True)
class CollectResult:
    status: int
    ids: list[str] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)
    error: dict[str, str] | None = None
    label: str = ""
    """What the refusal is counted as (a fixed phrase, never input); default: the field."""

    def body(self) -> dict[str, object]:
        if self.error is not None:
            return {"error": self.error}
        out: dict[str, object] = {"accepted": len(self.ids), "ids": self.ids}
        if self.rejected:
            out["rejected"] = self.rejected
            if not self.ids:  # nothing accepted: lead with the first reason, for humans
                first = self.rejected[0]["errors"]
                if isinstance(first, list) and first:
                    out["error"] = first[0]
        return out


def _whole(status: int, field_name: str, reason: str, label: str = "") -> CollectResult:
    return CollectResult(status=status, error={"field": field_name, "reason": reason}, label=label)


def client_event_id(site_id: str, key: str) -> str:
    """A stable UUID-shaped id for a client's idempotency key, unique per site."""
    raw = bytearray(hashlib.blake2b(f"{site_id}\x1f{key}".encode(), digest_size=16).digest())
    raw[6] = 0x80 | (raw[6] & 0x0F)  # version 8: custom
    raw[8] = 0x80 | (raw[8] & 0x3F)
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def decode_body(body: bytes, media_type: str) -> tuple[list[object], bool] | CollectResult:
    """The list of decoded events and whether the body was a batch, or a whole-request error."""
    if media_type in NDJSON_TYPES:
        items: list[object] = []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(decode_json(line))
            except BodyProblem as exc:
                return _whole(400, "body", f"line {number} {exc.reason}", f"body: {exc.kind}")
        return items, True
    if media_type not in JSON_TYPES:
        return _whole(
            415, "content-type", "must be application/json, application/x-ndjson or text/plain"
        )
    try:
        decoded = decode_json(body)
    except BodyProblem as exc:
        return _whole(400, "body", exc.reason, f"body: {exc.kind}")
    if isinstance(decoded, list):
        return decoded, True
    return [decoded], False


class CountryLookup(Protocol):
    """Where a client IP is, offline: an ISO 3166 alpha-2 code, or "" when unknown (private,
    reserved). ``hitstream.enrich.geo`` has the one bootstrap wires in."""

    def country(self, ip: str) -> str: ...


MAX_REJECTION_KEYS: Final = 10_000
"""Distinct (site, reason) pairs counted apart; the rest share one key (memory stays bounded
whatever site ids bad requests carry)."""


class Collector:
    def __init__(
        self,
        log: EventLog,
        salts: SaltKeeper,
        countries: CountryLookup,
        metrics: Metrics,
        *,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.log = log
        self.salts = salts
        self.countries = countries
        self.metrics = metrics
        self.limits = limits
        self._clock = clock or (lambda: int(time.time() * 1000))
        self.rejections: Counter[tuple[str, str]] = Counter()
        """(site_id or "", "field:reason") -> events refused by this process, for the
        data-quality panel; ``pending`` holds what the shared tally has not counted yet."""
        self.pending: Counter[tuple[str, str]] = Counter()

    def _reject(self, site_id: str, reason: str) -> None:
        key = (site_id, reason)
        if key not in self.rejections and len(self.rejections) >= MAX_REJECTION_KEYS:
            key = ("", "too many distinct sites and reasons to tell apart")  # site ids are input
        self.rejections[key] += 1
        self.pending[key] += 1

    def take_pending(self) -> Counter[tuple[str, str]]:
        """The rejections not handed to the shared tally yet (``put_back`` if it failed)."""
        taken, self.pending = self.pending, Counter()
        return taken

    def put_back(self, counts: Counter[tuple[str, str]]) -> None:
        self.pending.update(counts)

    def _count_rejection(self, data: object, problems: list[Problem]) -> None:
        site = data.get("site_id") if isinstance(data, dict) else None
        site_id = site if isinstance(site, str) and len(site) <= self.limits.max_site_id else ""
        for problem in problems:
            base = problem.field.split(".", 1)[0]
            label = (
                base if base in KNOWN_FIELDS or base in ("", "body", "event") else "unknown_field"
            )
            reason = "is not a known field" if label == "unknown_field" else problem.reason
            self.metrics.events_rejected.labels(label or "event", reason).inc()
            self._reject(site_id, f"{label or 'event'}: {reason}")

    def reject_request(self, result: CollectResult) -> CollectResult:
        reason = result.label or (result.error["field"] if result.error else "unknown")
        self.metrics.requests_rejected.labels(str(result.status), reason).inc()
        self._reject("", f"request {result.status}: {reason}")
        return result

    async def collect(
        self, body: bytes, media_type: str, client_ip: str, user_agent: str
    ) -> CollectResult:
        decoded = decode_body(body, media_type)
        if isinstance(decoded, CollectResult):
            return self.reject_request(decoded)
        items, is_batch = decoded
        if not is_batch and len(body) > self.limits.max_body_bytes:
            return self.reject_request(
                _whole(
                    413, "body", f"a single event may be at most {self.limits.max_body_bytes} bytes"
                )
            )
        if not items:
            return self.reject_request(_whole(422, "body", "holds no events"))
        if len(items) > self.limits.max_batch_events:
            return self.reject_request(
                _whole(413, "body", f"holds more than {self.limits.max_batch_events} events")
            )
        now = self._clock()
        salts = await self.salts.salts(now)
        user_agent = user_agent[: self.limits.max_user_agent]
        country = self.countries.country(client_ip)
        accepted: list[AcceptedEvent] = []
        rejected: list[dict[str, object]] = []
        for index, item in enumerate(items):
            outcome = validate_event(item, now_ms=now, limits=self.limits)
            if isinstance(outcome, list):
                self._count_rejection(item, outcome)
                rejected.append(
                    {
                        "index": index,
                        "errors": [{"field": p.field, "reason": p.reason} for p in outcome],
                    }
                )
                continue
            self._stamp(outcome, salts.current, salts.previous, client_ip, user_agent, now)
            outcome.country = country
            accepted.append(outcome)
        if not accepted:
            return CollectResult(status=422, rejected=rejected)
        messages = [
            (f"{e.site_id}\x1f{e.visitor_id}".encode(), _ENCODER.encode(e)) for e in accepted
        ]
        started = time.perf_counter()
        await self.log.append(messages)  # LogUnavailable escapes: nothing is acknowledged
        self.metrics.append_seconds.observe(time.perf_counter() - started)
        self.metrics.events_accepted.inc(len(accepted))
        return CollectResult(status=202, ids=[e.event_id for e in accepted], rejected=rejected)

    def _stamp(
        self,
        event: AcceptedEvent,
        salt: bytes,
        previous_salt: bytes,
        ip: str,
        user_agent: str,
        now: int,
    ) -> None:
        if event.event_id:
            event.event_id = client_event_id(event.site_id, event.event_id)
        else:
            event.event_id = new_event_id(now, os.urandom(10))
        if event.user_id:
            event.visitor_id = event.visitor_id_prev = user_hash(event.site_id, event.user_id)
        else:
            event.visitor_id = visitor_hash(salt, ip, user_agent, event.site_id)
            event.visitor_id_prev = (
                visitor_hash(previous_salt, ip, user_agent, event.site_id)
                if previous_salt != salt
                else event.visitor_id
            )
        event.user_agent = user_agent
