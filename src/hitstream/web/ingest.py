"""The lean ingestion path: ``POST /api/v1/events`` as a raw ASGI endpoint in front of FastAPI.

The route is the hot path: a browser sends one small request per pageview. FastAPI's layers
(middleware stack, dependency resolution, cookie and query parsing, the response's trip back
through every middleware) cost several times the work itself, so ``HitstreamApp`` (the app
``create_app`` builds) hands ``POST /api/v1/events`` straight to ``LeanIngest`` and everything
else to FastAPI. The FastAPI route of ``web/collect.py`` stays for the OpenAPI document (and
answers the same, through the same ``answer`` function, should anything reach it).

What the middlewares did for this route is done here, once: the security headers
(``web/headers.DEFAULTS``), CORS for an ``Origin`` that is an allowed host of a registered site
(``web/cors.ingest_allowed``; preflights are ``OPTIONS`` and stay with FastAPI), the JSON 503
of an unavailable adapter, a JSON 500 (logged) for a bug. The answers, their counting by reason
and the collector's guarantees (202 only after a durable append) are the route's own.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Final

import msgspec
from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send

from hitstream.domain.access import ANONYMOUS, Principal
from hitstream.errors import AccessDenied, AdapterUnavailable, LogUnavailable
from hitstream.services.access import Gatekeeper
from hitstream.services.collector import CollectResult
from hitstream.web.auth import credentials_of
from hitstream.web.cors import ingest_allowed
from hitstream.web.deps import AppServices, Network
from hitstream.web.encoding import EncodingProblem, inflate
from hitstream.web.headers import DEFAULTS

log = logging.getLogger(__name__)
INGEST: Final = "/api/v1/events"
_ENCODE = msgspec.json.Encoder()
_STATIC_HEADERS: Final = [(name.encode(), value.encode()) for name, value in DEFAULTS]
_JSON: Final = (b"content-type", b"application/json")
_WANTED: Final = frozenset(
    {
        b"content-length",
        b"content-encoding",
        b"content-type",
        b"authorization",
        b"user-agent",
        b"origin",
        b"x-forwarded-for",
    }
)
_TRUST_CACHE: Final = 1024
"""Peer addresses whose trusted-proxy verdict is remembered (a server sees few peers that
matter: its proxies; past this many the cache starts over)."""

Answer = tuple[int, object, dict[str, str]]
"""Status, JSON body, extra headers."""


class Trust:
    """Whether an address is a trusted proxy, remembered per address (parsed once)."""

    def __init__(self, trusted: Sequence[Network]) -> None:
        self.trusted = tuple(trusted)
        self._known: dict[str, bool | None] = {}

    def verdict(self, address: str) -> bool | None:
        """True: a trusted proxy; False: an IP address that is not; None: no IP address."""
        try:
            return self._known[address]
        except KeyError:
            pass
        known: bool | None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            known = None
        else:
            known = any(ip in network for network in self.trusted)
        if len(self._known) >= _TRUST_CACHE:
            self._known.clear()
        self._known[address] = known
        return known

    def __call__(self, address: str) -> bool:
        return self.verdict(address) is True


def forwarded_ip(peer: str, forwarded: str, trust: Trust, any_trusted: bool) -> str:
    """The peer address, or the right-most untrusted hop of ``X-Forwarded-For`` behind a
    trusted proxy (a hop that is no IP address gives the peer). Each address is parsed once."""
    if not any_trusted or not trust(peer):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        verdict = trust.verdict(hop)
        if verdict is not True:
            return hop if verdict is False else peer
    return hops[0] if hops and trust.verdict(hops[0]) is not None else peer


async def read_capped(
    declared: str | None, chunks: AsyncIterator[bytes] | bytes, cap: int
) -> bytes | None:
    """The body, or None past ``cap``; ``chunks`` (or the whole body, already read) raises
    ``EncodingProblem`` if the client went away before the body was complete."""
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return None
    if isinstance(chunks, bytes):
        return chunks if len(chunks) <= cap else None
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _result(result: CollectResult) -> Answer:
    headers = {"Retry-After": str(result.retry_after)} if result.retry_after else {}
    return result.status, result.body(), headers


async def answer(
    services: AppServices,
    headers: Mapping[str, str],
    peer: str,
    chunks: AsyncIterator[bytes] | bytes,
    principal_of: Callable[[], Principal] | None,
    trust: Trust,
) -> Answer:
    """What ``POST /api/v1/events`` answers, on either path. ``principal_of`` (set when the
    request has an ``Authorization`` header) resolves the sender; it may raise
    ``AccessDenied``."""
    collector = services.collector
    if collector is None:  # the route is mounted only with the collector role
        raise RuntimeError("this process built no collector, yet serves /api/v1/events")
    cap = collector.limits.max_batch_body_bytes
    try:
        body = await read_capped(headers.get("content-length"), chunks, cap)
        if body is not None:
            body = inflate(body, headers.get("content-encoding", ""), cap)
    except EncodingProblem as exc:
        error = {"field": exc.field, "reason": exc.reason}
        return _result(
            collector.reject_request(CollectResult(exc.status, error=error, label=exc.label))
        )
    if body is None:
        error = {"field": "body", "reason": f"is larger than {cap} bytes"}
        return _result(collector.reject_request(CollectResult(status=413, error=error)))
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    principal = ANONYMOUS
    if principal_of is not None:
        try:  # a server sending with a key; an unknown key is refused, not ignored
            principal = principal_of()
        except AccessDenied as exc:
            error = {"field": exc.field, "reason": exc.reason}
            return _result(collector.reject_request(CollectResult(401, error=error)))
    try:
        result = await collector.collect(
            body,
            media_type,
            forwarded_ip(
                peer, headers.get("x-forwarded-for", ""), trust, bool(services.trusted_proxies)
            ),
            headers.get("user-agent", ""),
            origin=headers.get("origin", ""),
            principal=principal,
        )
    except LogUnavailable:
        collector.reject_request(
            CollectResult(status=503, error={"field": "log", "reason": "unavailable"})
        )
        reason = "event log unavailable; nothing was stored"
        return 503, {"error": {"field": "log", "reason": reason}}, {"Retry-After": "5"}
    return _result(result)


class LeanIngest:
    """The raw ASGI endpoint for ``POST /api/v1/events`` (``HitstreamApp`` calls it)."""

    def __init__(self, services: AppServices, cors_origins: Sequence[str] = ()) -> None:
        self.services = services
        self.origins = frozenset(cors_origins)
        self.trust = Trust(services.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = wanted_headers(scope["headers"])
        client = scope.get("client")
        peer = str(client[0]) if client else ""

        first: Message | None = None

        async def chunks() -> AsyncIterator[bytes]:
            message = first if first is not None else await receive()
            while True:
                if message["type"] == "http.disconnect":
                    raise EncodingProblem(400, "body", "was not complete", "body: incomplete")
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return
                message = await receive()

        whole: bytes | None = None
        try:
            # a tracker's small body comes in one message: read it without a generator (a
            # declared length past the cap is refused before any of the body is read)
            if self._fits(headers.get("content-length")):
                first = await receive()
            whole = (
                first.get("body", b"")
                if first is not None
                and first["type"] == "http.request"
                and not first.get("more_body", False)
                else None
            )
        except Exception:
            log.exception("POST %s failed", INGEST)
            status, payload, failed = _failed()
            extra = _headers(payload, failed)
        else:
            status, payload, extra = await self.respond(
                scope, headers, peer, chunks() if whole is None else whole
            )
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": payload})

    async def respond(
        self,
        scope: Scope,
        headers: Mapping[str, str],
        peer: str,
        body: AsyncIterator[bytes] | bytes,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Status, JSON payload and headers (all but the server's own) of the answer to a
        request with ``headers`` (the ``_WANTED`` ones, lower-case) from ``peer``: what
        this endpoint sends, and what the edge's quick path (``web/guard.py``) writes for
        a small body it read itself. Never raises: a bug is a logged JSON 500."""
        try:
            principal_of = None
            if "authorization" in headers and self.services.gate is not None:
                principal_of = await _resolve(self.services.gate, scope)
            status, answered, extra = await answer(
                self.services, headers, peer, body, principal_of, self.trust
            )
            payload = _ENCODE.encode(answered)
        except AdapterUnavailable as exc:
            status, extra = 503, {"Retry-After": "5"}
            payload = _ENCODE.encode({"error": {"field": "service", "reason": str(exc)}})
        except Exception:
            log.exception("POST %s failed", INGEST)
            status, payload, extra = _failed()
        origin = headers.get("origin")
        if origin is not None:
            extra["vary"] = "Origin"
            try:
                if await self._cors_allowed(origin):
                    extra["access-control-allow-origin"] = origin
            except Exception:  # the registry is down: the answer stands, without CORS
                log.warning("CORS check for %s failed", INGEST, exc_info=True)
        return status, payload, _headers(payload, extra)

    def _fits(self, declared: str | None) -> bool:
        """A declared body length under the collector's cap."""
        collector = self.services.collector
        return (
            collector is not None
            and declared is not None
            and declared.isdigit()
            and int(declared) <= collector.limits.max_batch_body_bytes
        )

    async def _cors_allowed(self, origin: str) -> bool:
        if "*" in self.origins or origin in self.origins:
            return True
        return await ingest_allowed(self.services.gate, origin)


async def _resolve(gate: Gatekeeper, scope: Scope) -> Callable[[], Principal]:
    """The sender's principal, resolved now; a refusal (a malformed header, an unknown or
    revoked key) is raised again inside ``answer``, which counts it as the route always did."""
    try:
        principal = (await gate.resolve(credentials_of(HTTPConnection(scope)))).principal
    except AccessDenied as exc:
        denied = exc

        def refuse() -> Principal:
            raise denied

        return refuse
    return lambda: principal


def _failed() -> tuple[int, bytes, dict[str, str]]:
    return 500, _ENCODE.encode({"error": {"field": "server", "reason": "internal error"}}), {}


def _headers(payload: bytes, extra: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    headers = [_JSON, (b"content-length", str(len(payload)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
    headers += _STATIC_HEADERS
    return headers


def wanted_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request headers this endpoint reads, by lower-case name (the first of each)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        if name in _WANTED:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers
