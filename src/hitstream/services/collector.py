"""The collector: decode, validate, check the site, limit, stamp, append to the log, answer.

Thin on purpose: enrichment, sessions and aggregation belong to the processor. The raw IP is
used here twice (visitor hash, country) and goes no further: it is never appended to the log.
``collect`` returns a ``CollectResult`` for every input; only ``LogUnavailable`` escapes (the
web layer answers 503 and nothing was acknowledged).

Sites: an event for a ``site_id`` that is not registered is refused by name, and so is one
whose URL host, or the request's ``Origin`` (sent by browsers), is not an allowed host of its
site. The registered sites come from the gatekeeper's in-memory copy (``services.access``),
refreshed within a second of any change. Limits: token buckets per client IP (callers with a
write key are exempt: a server sends for many visitors) and per site, events per second; a
request over a limit is refused whole with 429 and ``Retry-After``, and counted. A write key
of the event's site may set the visitor's ``ip`` and ``user_agent`` (server-side tracking);
they are used like the request's own and never stored.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol
from urllib.parse import urlsplit

from hitstream.domain import access
from hitstream.domain.access import ANONYMOUS, Action, Principal
from hitstream.domain.events import DEFAULT_LIMITS, AcceptedEvent, Limits, Problem
from hitstream.domain.queries import URL_QUERY_MODES, campaign_only, cut_prop_urls
from hitstream.domain.ratelimit import Buckets, retry_after, take_all
from hitstream.domain.sites import Site, normal_host
from hitstream.domain.validation import KNOWN_FIELDS, validate_event, validate_fields
from hitstream.domain.visitors import Salts, user_hash
from hitstream.domain.visitors import event_ids as new_event_ids
from hitstream.log.base import EventLog
from hitstream.metrics import Metrics
from hitstream.salts.base import SaltKeeper
from hitstream.services import wire
from hitstream.services.json_body import BodyProblem
from hitstream.services.json_body import decode as decode_json
from hitstream.services.typed_body import EventIn, accept_fast, decode_typed

JSON_TYPES = ("application/json", "text/plain", "")
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
_NO_OVERRIDES: Final[Mapping[str, object]] = {}
"""An event's overrides when it sets none (shared: read only)."""


@dataclass(slots=True)
class CollectResult:
    status: int
    ids: list[str] = field(default_factory=list)
    rejected: list[dict[str, object]] = field(default_factory=list)
    error: dict[str, str] | None = None
    label: str = ""
    """What the refusal is counted as (a fixed phrase, never input); default: the field."""
    retry_after: int | None = None
    """Seconds for a ``Retry-After`` header (429)."""
    positions: list[tuple[int, int]] | None = None
    """(partition, offset) in the event log of each accepted event, where the log tells."""

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


class SiteBook(Protocol):
    """The registered sites, as the gatekeeper keeps them (``services.access.Gatekeeper``):
    a registry that changed is a new mapping (the collector keeps checks per mapping)."""

    async def sites(self) -> Mapping[str, Site]: ...


OVERRIDES: Final = ("ip", "user_agent")
"""Fields a write key may set on an event (server-side tracking), never stored."""
_LABELS: Final = frozenset({"", "body", "event", "origin", "ip", "user_agent"})


MAX_REJECTION_KEYS: Final = 10_000
"""Distinct (site, reason) pairs counted apart; the rest share one key (memory stays bounded
whatever site ids bad requests carry)."""
MAX_KEPT_VERDICTS: Final = 4096
"""Site checks of anonymous senders kept across requests, by (origin, site, host): the
tracker's traffic is a few of them; hosts are the sender's text, so the memory is bounded
(full, it starts again)."""


class Collector:
    def __init__(
        self,
        log: EventLog,
        salts: SaltKeeper,
        countries: CountryLookup,
        metrics: Metrics,
        *,
        sites: SiteBook,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], int] | None = None,
        per_ip: Buckets | None = None,
        per_site: Buckets | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        url_query: str = "campaign",
    ) -> None:
        """``url_query``: ``campaign`` keeps of a page URL's query only its campaign tags
        (``domain/queries.py``), ``all`` keeps URLs as sent."""
        self.log = log
        self.salts = salts
        self.countries = countries
        self.metrics = metrics
        self.sites = sites
        self.limits = limits
        self._clock = clock or (lambda: int(time.time() * 1000))
        self.per_ip = per_ip if per_ip is not None else Buckets(0, 0)
        self.per_site = per_site if per_site is not None else Buckets(0, 0)
        self._monotonic = monotonic
        if url_query not in URL_QUERY_MODES:
            raise ValueError(f"url_query must be one of {URL_QUERY_MODES}, not {url_query!r}")
        self.url_query = url_query
        self._campaign_only = url_query == "campaign"
        self.rejections: Counter[tuple[str, str]] = Counter()
        """(site_id or "", "field:reason") -> events refused by this process, for the
        data-quality panel; ``pending`` holds what the shared tally has not counted yet."""
        self.pending: Counter[tuple[str, str]] = Counter()
        self._verdicts_of: Mapping[str, Site] | None = None
        self._verdicts: dict[str | None, dict[tuple[str, str], list[Problem]]] = {}
        """What an anonymous sender's event without overrides was found to break, by origin
        host then (site, host), against the registry ``_verdicts_of`` (a new one, after a
        refresh, starts them again): single-event requests checked each site anew."""
        self._folded_of: Mapping[str, Site] | None = None
        self._folded: dict[str, str] = {}

    def _folded_ids(self, sites: Mapping[str, Site]) -> dict[str, str]:
        """Lower-cased site id -> the registered one (two sites never differ by case only:
        ``domain.sites.check_unlike``), made once per registry version."""
        if sites is not self._folded_of:
            self._folded_of, self._folded = sites, {s.lower(): s for s in sites}
        return self._folded

    def _kept_verdicts(
        self, sites: Mapping[str, Site], origin_host: str | None
    ) -> dict[tuple[str, str], list[Problem]]:
        if sites is not self._verdicts_of:
            self._verdicts_of, self._verdicts = sites, {}
        kept = self._verdicts.get(origin_host)
        if kept is None or len(kept) >= MAX_KEPT_VERDICTS:
            if len(self._verdicts) >= MAX_KEPT_VERDICTS:
                self._verdicts = {}
            kept = self._verdicts[origin_host] = {}
        return kept

    def widened(self, limits: Limits) -> Collector:
        """The same collector (log, salts, sites, counters) with other timestamp limits and
        no rate limits: the demo's backfill of history."""
        twin = Collector(
            self.log, self.salts, self.countries, self.metrics, sites=self.sites,
            limits=limits, clock=self._clock, url_query=self.url_query,
        )  # fmt: skip
        twin.rejections, twin.pending = self.rejections, self.pending
        return twin

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
        site = (
            data.get("site_id")
            if isinstance(data, dict)
            else data.site_id
            if isinstance(data, EventIn)
            else None
        )
        site_id = site if isinstance(site, str) and len(site) <= self.limits.max_site_id else ""
        for problem in problems:
            base = problem.field.split(".", 1)[0]
            label = base if base in KNOWN_FIELDS or base in _LABELS else "unknown_field"
            reason = "is not a known field" if label == "unknown_field" else problem.reason
            # a reason may quote the sender's text (a props key): not in a metric's label,
            # where every distinct text would be a series of its own
            self.metrics.events_rejected.labels(label or "event", _QUOTED.sub("…", reason)).inc()
            self._reject(site_id, f"{label or 'event'}: {reason}")

    def reject_request(self, result: CollectResult, site_id: str = "") -> CollectResult:
        """Count a request refused whole (under ``site_id`` when it named a registered one)."""
        reason = result.label or (result.error["field"] if result.error else "unknown")
        self.metrics.requests_rejected.labels(str(result.status), reason).inc()
        self._reject(site_id, f"request {result.status}: {reason}")
        return result

    async def collect(
        self,
        body: bytes,
        media_type: str,
        client_ip: str,
        user_agent: str,
        *,
        origin: str = "",
        principal: Principal = ANONYMOUS,
    ) -> CollectResult:
        """``origin``: the request's ``Origin`` header (browsers send it); ``principal``: who
        sent it (a write key may set ``ip``/``user_agent`` and is not limited per IP)."""
        typed = decode_typed(body) if media_type in JSON_TYPES else None
        decoded = typed if typed is not None else decode_body(body, media_type)
        if isinstance(decoded, CollectResult):
            return self.reject_request(decoded)
        items: Sequence[object] = decoded[0]
        is_batch = decoded[1]
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
        sites = await self.sites.sites()
        origin_host = _origin_host(origin) if origin else None
        accepted: list[wire.Event] = []
        rejected: list[dict[str, object]] = []
        senders: list[tuple[str, str]] = []
        checks = _SiteChecks(sites, origin_host, principal, self._folded_ids(sites))
        if principal is ANONYMOUS:  # its verdicts hold for the next requests too
            checks.plain = self._kept_verdicts(sites, origin_host)
        sender = (client_ip, user_agent)
        for index, item in enumerate(items):
            if isinstance(item, EventIn):  # the typed pass: types checked while decoding
                overrides = (
                    _NO_OVERRIDES
                    if item.ip is None and item.user_agent is None
                    else item.overrides()
                )
                outcome: wire.Event | AcceptedEvent | list[Problem] | None
                outcome = accept_fast(item, now, self.limits)
                if outcome is None:
                    outcome = validate_fields(
                        item.field, now_ms=now, limits=self.limits, problems=[]
                    )
            else:
                item, overrides = _split_overrides(item)
                outcome = validate_event(item, now_ms=now, limits=self.limits)
            if isinstance(outcome, AcceptedEvent):  # the generic validation's
                outcome = wire.from_accepted(outcome)
            if not isinstance(outcome, list):
                outcome = checks.check(outcome, overrides)
            if isinstance(outcome, list):
                self._count_rejection(item, outcome)
                rejected.append(
                    {
                        "index": index,
                        "errors": [{"field": p.field, "reason": p.reason} for p in outcome],
                    }
                )
                continue
            accepted.append(outcome)
            senders.append(
                (str(overrides.get("ip", client_ip)), str(overrides.get("user_agent", user_agent)))
                if overrides
                else sender
            )
        if not accepted:
            return CollectResult(status=422, rejected=rejected)
        limited = self._limit(client_ip, len(items), accepted, principal)
        if limited is not None:
            return limited
        salts = await self.salts.salts(now)
        # one draw per request, 10 random bytes per id, formatted together
        fresh_ids = new_event_ids(now, os.urandom(10 * len(accepted)))
        visitors: dict[tuple[str, str, str], tuple[str, str]] = {}
        countries: dict[str, str] = {}  # this request's addresses only: none kept after it
        for event, (ip, agent), fresh_id in zip(accepted, senders, fresh_ids, strict=True):
            agent = agent[: self.limits.max_user_agent]
            self._stamp(event, salts, ip, agent, fresh_id, visitors)
            country = countries.get(ip)
            if country is None:
                country = countries[ip] = self.countries.country(ip)
            event.country = country
        keys: dict[tuple[str, str], bytes] = {}  # a batch's events share a few visitors
        messages = []
        for e in accepted:
            key = keys.get((e.site_id, e.visitor_id))
            if key is None:
                key = keys[(e.site_id, e.visitor_id)] = f"{e.site_id}\x1f{e.visitor_id}".encode()
            messages.append((key, wire.encode(e)))
        started = time.perf_counter()
        positions = await self.log.append(messages)  # LogUnavailable escapes: nothing acked
        self.metrics.append_seconds.observe(time.perf_counter() - started)
        self.metrics.events_accepted.inc(len(accepted))
        return CollectResult(
            status=202,
            ids=[e.event_id for e in accepted],
            rejected=rejected,
            positions=positions,
        )

    def _limit(
        self, client_ip: str, sent: int, events: list[wire.Event], principal: Principal
    ) -> CollectResult | None:
        """Take the request's events from its buckets, or refuse it whole (429)."""
        if not self.per_ip.enabled and not self.per_site.enabled:
            return None
        per_site = Counter(e.site_id for e in events)
        limits: list[tuple[Buckets, Mapping[str, int]]] = [(self.per_site, per_site)]
        if not principal.has_credential:
            limits.append((self.per_ip, {client_ip: sent}))
        wait = take_all(limits, self._monotonic())
        if wait <= 0:
            return None
        over_ip = (
            not principal.has_credential
            and self.per_ip.wait_for({client_ip: sent}, self._monotonic()) > 0
        )
        what = "this client address" if over_ip else "this site"
        reason = f"more events than {what} may send per second; retry after Retry-After"
        seconds = retry_after(wait)
        self.metrics.requests_rejected.labels("429", "rate").inc()
        for site in per_site:
            self._reject(site, f"rate limit: {what}")
        return CollectResult(
            429, error={"field": "rate", "reason": reason}, label="rate", retry_after=seconds
        )

    def _stamp(
        self,
        event: wire.Event,
        salts: Salts,
        ip: str,
        user_agent: str,
        fresh_id: str,
        visitors: dict[tuple[str, str, str], tuple[str, str]],
    ) -> None:
        """Id (the client's key hashed per site, else ``fresh_id``), visitor hashes and user
        agent of ``event``; ``visitors`` remembers the hashes
        of this request's (ip, user agent, site) triples (a batch shares them)."""
        if event.event_id:
            event.event_id = client_event_id(event.site_id, event.event_id)
        else:
            event.event_id = fresh_id
        if event.user_id:
            event.visitor_id = event.visitor_id_prev = user_hash(event.site_id, event.user_id)
        else:
            key = (ip, user_agent, event.site_id)
            hashes = visitors.get(key)
            if hashes is None:
                hashes = visitors[key] = salts.visitor_ids(ip, user_agent, event.site_id)
            event.visitor_id, event.visitor_id_prev = hashes
        event.user_agent = user_agent
        if self._campaign_only:
            if event.query or "#" in event.url or "@" in event.url:
                event.url, event.query = campaign_only(event.url, event.query)
            if event.props:
                event.props = cut_prop_urls(event.props)


@dataclass(slots=True)
class _SiteChecks:
    """What a request's events are checked against, and what the checks found, per (site,
    host), for the rest of the request."""

    sites: Mapping[str, Site]
    origin_host: str | None
    principal: Principal
    folded: Mapping[str, str]
    """Lower-cased site id -> the registered one."""
    seen: dict[tuple[str, str], tuple[bool, bool]] = field(default_factory=dict)
    """(site, host) -> (may this sender write, is the host allowed)."""
    plain: dict[tuple[str, str], list[Problem]] = field(default_factory=dict)
    """(site, host) -> the problems of an event there with no overrides (none: [])."""

    def check(
        self, event: wire.Event, overrides: Mapping[str, object]
    ) -> wire.Event | list[Problem]:
        """``event`` or its problems with its site (those of an event without overrides
        found once per site and host). A site id in another case names the registered site
        (a domain is one site whatever its case): the event takes its id, as stored."""
        if event.site_id not in self.sites:
            event.site_id = self.folded.get(event.site_id.lower(), event.site_id)
        if overrides:
            return _site_problems(event, overrides, self) or event
        place = (event.site_id, event.hostname)
        verdict = self.plain.get(place)
        if verdict is None:
            verdict = self.plain[place] = _site_problems(event, overrides, self)
        return list(verdict) if verdict else event


def _site_problems(
    event: wire.Event, overrides: Mapping[str, object], checks: _SiteChecks
) -> list[Problem]:
    site = checks.sites.get(event.site_id)
    if site is None:
        return [Problem("site_id", "is not a registered site")]
    problems: list[Problem] = []
    place = (event.site_id, event.hostname)
    known = checks.seen.get(place)
    if known is None:
        known = checks.seen[place] = (
            access.allowed(checks.principal, Action.WRITE_EVENTS, event.site_id),
            not event.hostname or site.allows(event.hostname),
        )
    writer, host_allowed = known
    if checks.principal.has_credential and not writer:
        problems.append(Problem("site_id", "is not a site this key may send events for"))
    if overrides and not writer:
        for name in overrides:
            problems.append(Problem(name, "may only be set with a write key of the site"))
    elif overrides:
        problems.extend(_override_problems(overrides))
    if not host_allowed:
        problems.append(Problem("url", "its host is not an allowed host of the site"))
    if checks.origin_host is not None and not site.allows(checks.origin_host):
        problems.append(Problem("origin", "is not an allowed host of the site"))
    return problems


_QUOTED: Final = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
"""A Python repr of a string inside a problem's reason (``key 'x' must be ...``)."""


def _origin_host(origin: str) -> str:
    """The host of an ``Origin`` header (``"null"`` and garbage give "": allowed nowhere)."""
    try:
        return normal_host(urlsplit(origin).hostname or "")
    except ValueError:
        return ""


def _split_overrides(item: object) -> tuple[object, dict[str, object]]:
    """The event without ``ip``/``user_agent``, and those two as sent."""
    if not isinstance(item, dict) or not any(name in item for name in OVERRIDES):
        return item, {}
    rest = {k: v for k, v in item.items() if k not in OVERRIDES}
    return rest, {k: v for k, v in item.items() if k in OVERRIDES and v is not None}


def _override_problems(overrides: Mapping[str, object]) -> list[Problem]:
    problems: list[Problem] = []
    for name, value in overrides.items():
        if not isinstance(value, str) or not value or len(value) > 1024:
            problems.append(Problem(name, "must be a non-empty string of at most 1024 characters"))
        elif "\x00" in value:  # no store holds it (PostgreSQL refuses the text)
            problems.append(Problem(name, "must not contain a NUL character"))
        elif name == "ip":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                problems.append(Problem("ip", "is not an IP address"))
    return problems
