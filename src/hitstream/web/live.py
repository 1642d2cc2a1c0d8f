"""The live channel: WebSocket ``/api/v1/live`` for dashboards, and its own figures.

Each socket gets two loops: a sender that drains the client's bounded queue (so a slow socket
only ever slows itself) and a receiver for ``set`` messages. The hub is built on first use
from the app's runtime (stats service, store, fan-out, metrics registry) unless the app
already holds one in ``app.state.live_hub``: call ``install(app)`` when building the app and
``await close(app)`` on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from hitstream.errors import QueryError
from hitstream.services.live import LiveHub, QualitySource
from hitstream.services.live_client import LiveClient

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["live"])

POLICY_VIOLATION = 1008


def _quality_source(app: Starlette) -> QualitySource:
    """Collector rejections (every collector's, through the tally) plus processor drops
    (store), per site."""

    async def quality(site_id: str) -> dict[str, Any]:
        runtime = app.state.runtime
        rejected = await runtime.rejections(site_id)
        dropped = await runtime.store.drop_counts(site_id)
        return {"site_id": site_id, "rejected": rejected, "dropped": dropped}

    return quality


def install(app: Starlette) -> LiveHub:
    """Build the app's hub from ``app.state.runtime`` (once; it starts no task until a
    dashboard connects) so its metrics are on ``/metrics`` from the start."""
    hub: LiveHub | None = getattr(app.state, "live_hub", None)
    if hub is None:
        runtime = app.state.runtime
        hub = LiveHub(
            runtime.stats,
            runtime.store,
            runtime.fanout,
            quality=_quality_source(app),
            registry=runtime.metrics.registry,
            query_ms=runtime.stats.now_ms,
        )
        app.state.live_hub = hub
    return hub


def hub_of(conn: HTTPConnection) -> LiveHub:
    app: Starlette = conn.app
    return install(app)


async def close(app: Starlette) -> None:
    """Close every live connection's state and the fan-out subscriptions (app shutdown)."""
    hub: LiveHub | None = getattr(app.state, "live_hub", None)
    if hub is not None:
        await hub.close()


async def _receive(websocket: WebSocket, hub: LiveHub, client: LiveClient) -> None:
    while True:
        await hub.receive(client, await websocket.receive_text())


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    """Frames: ``snapshot`` (on connect and after ``set``), ``update`` (at most 1/s while
    data changes), ``event`` (sampled, ``skipped`` counts the rest), ``alert``, ``error``.
    Send ``{"type": "set", "period": ..., "filters": ...}`` to change the view."""
    hub = hub_of(websocket)
    await websocket.accept()
    try:
        client = await hub.connect(dict(websocket.query_params))
    except QueryError as exc:
        await websocket.send_json({"type": "error", "field": exc.field, "reason": exc.reason})
        await websocket.close(code=POLICY_VIOLATION, reason=exc.field)
        return
    sender = asyncio.create_task(client.run_sender(websocket.send_text))
    receiver = asyncio.create_task(_receive(websocket, hub, client))
    for task in (sender, receiver):
        task.add_done_callback(_settle)
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # nothing awaited in here: this may run while the server cancels the handler
        sender.cancel()
        receiver.cancel()
        await hub.disconnect(client)
    with contextlib.suppress(Exception):  # the peer may be gone already
        await websocket.close()


def _settle(task: asyncio.Task[None]) -> None:
    """Retrieve a finished loop's outcome: a dead peer is routine, not an error to report."""
    exc = None if task.cancelled() else task.exception()
    if exc is not None and not isinstance(exc, WebSocketDisconnect):
        log.debug("live socket ended: %r", exc)


@router.get("/live/stats", summary="Live channel figures: clients, views, latency p50/p99")
async def live_stats(request: Request) -> dict[str, Any]:
    return hub_of(request).summary()
