"""The live channel: WebSocket ``/api/v1/live`` for dashboards, and its own figures.

Each socket gets two loops: a sender that drains the client's bounded queue (so a slow socket
only ever slows itself) and a receiver for ``set`` messages. The hub is bootstrap's (built
with the stats service, store, fan-out and quality source, closed by the runtime).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from hitstream.errors import QueryError
from hitstream.services.live import LiveHub
from hitstream.services.live_client import LiveClient
from hitstream.web.deps import LiveDep

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["live"])

POLICY_VIOLATION = 1008


async def _receive(websocket: WebSocket, hub: LiveHub, client: LiveClient) -> None:
    while True:
        await hub.receive(client, await websocket.receive_text())


@router.websocket("/live")
async def live(websocket: WebSocket, hub: LiveDep) -> None:
    """Frames: ``snapshot`` (on connect and after ``set``), ``update`` (at most 1/s while
    data changes), ``event`` (sampled, ``skipped`` counts the rest), ``alert``, ``error``.
    Send ``{"type": "set", "period": ..., "filters": ...}`` to change the view."""
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
async def live_stats(hub: LiveDep) -> dict[str, Any]:
    return hub.summary()
