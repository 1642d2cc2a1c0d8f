"""The HTTP server every role runs: uvicorn, configured as hitstream's edge.

One function, ``server_config``, so that ``serve``, ``collector``, ``processor`` and ``web``
all listen the same way (``cli._run`` calls it):

- the guarded httptools protocol (``web/guard.py``): header and body timeouts, head size
  and count limits, the connection cap;
- ``proxy_headers=False``: uvicorn would otherwise believe ``X-Forwarded-For`` from
  127.0.0.1 whatever ``HITSTREAM_TRUSTED_PROXIES`` says; hitstream reads that header itself,
  from the trusted proxies only (``web/collect.client_ip``);
- keep-alive timeout, WebSocket message size, no ``Server`` header, no access log, and
  uvicorn's own logging config off (hitstream's handlers, with ``web/redact.py``, get it);
- enough file descriptors for the cap: the soft limit is raised toward the hard one, and if
  even that is too low the cap is lowered, with a warning, so that the cap and not the
  kernel decides who is refused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from hitstream.web.guard import Edge, EdgeLimits, protocol_class

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from hitstream.metrics import Metrics
    from hitstream.settings import Settings

log = logging.getLogger(__name__)

FD_RESERVE: Final = 256
"""Descriptors kept for everything but client connections: log and store files, database
pools, Kafka and Redis sockets, the listening socket."""
WS_MAX_MESSAGE_BYTES: Final = 64 * 1024
"""A dashboard sends only small ``set`` messages; uvicorn's default would take 16 MiB."""


def limits_from(settings: Settings) -> EdgeLimits:
    return EdgeLimits(
        max_connections=settings.max_connections,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )


def fit_to_descriptors(max_connections: int, reserve: int = FD_RESERVE) -> int:
    """Raise the soft RLIMIT_NOFILE to hold ``max_connections`` (+ reserve) if the hard
    limit allows; return the cap that fits (lowered, with a warning, if it does not)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + reserve
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - reserve)
        log.warning(
            "HITSTREAM_MAX_CONNECTIONS=%d needs %d file descriptors but the limit is %d: "
            "capping connections at %d (raise `ulimit -n` to allow more)",
            max_connections,
            wanted,
            soft,
            fitted,
        )
        return fitted
    return max_connections


def server_config(app: ASGIApp, settings: Settings, metrics: Metrics) -> uvicorn.Config:
    """The uvicorn configuration for ``app`` under ``settings``'s edge limits."""
    import dataclasses

    import uvicorn

    limits = limits_from(settings)
    limits = dataclasses.replace(limits, max_connections=fit_to_descriptors(limits.max_connections))
    edge = Edge(
        limits,
        on_reject=lambda status, reason: metrics.requests_rejected.labels(
            str(status), reason
        ).inc(),
        on_close=lambda reason: metrics.connections_closed.labels(reason).inc(),
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(edge),
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
