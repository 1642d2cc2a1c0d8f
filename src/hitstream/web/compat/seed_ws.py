"""Seed 000's WebSocket ``/ws``: the live hub's frames in the seed's words.

A socket here is a live-hub client for the configured site (period: today), exactly like a
dashboard on ``/api/v1/live``, with the same credentials and close codes (4401, 4403, 4404).
Its frames are translated: ``snapshot`` -> ``analytics_snapshot`` and ``update`` ->
``analytics_update`` (each carrying the ``GET /analytics`` body, from the same Stats
queries), every sampled event -> one ``real_time_event``, ``alert`` -> ``alert``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from hitstream.domain.access import Action
from hitstream.errors import AccessDenied, NotFound, QueryError
from hitstream.web.auth import gate_of
from hitstream.web.compat.seed_reads import SEED_NAMES, Reader, analytics_body
from hitstream.web.compat.seed_sites import configured_site
from hitstream.web.deps import LiveDep, StatsDep
from hitstream.web.live import FORBIDDEN, NOT_FOUND, POLICY_VIOLATION, UNAUTHORIZED, socket_caller

router = APIRouter(tags=["compat"])


def seed_event(event: dict[str, Any]) -> dict[str, Any]:
    """A live event as seed 000's ``real_time_event`` data."""
    kind = str(event.get("type", ""))
    stamp = event.get("timestamp")
    props = event.get("props")
    out: dict[str, Any] = {
        "id": event.get("event_id", ""),
        "type": event.get("name") if kind == "custom" else SEED_NAMES.get(kind, kind),
        "path": event.get("path", ""),
        "metadata": {
            "page_title": event.get("title", ""),
            "device": event.get("device", ""),
            "browser": event.get("browser", ""),
            "source": event.get("source", ""),
            "country": event.get("country", ""),
            **(props if isinstance(props, dict) else {}),
        },
    }
    if isinstance(stamp, int):
        out["timestamp"] = datetime.fromtimestamp(stamp / 1000, tz=UTC).isoformat()
    return out


class Translator:
    """Turns the hub's frames for one socket into the seed's messages."""

    def __init__(self, websocket: WebSocket, reader: Reader) -> None:
        self.websocket = websocket
        self.reader = reader

    async def _send(self, kind: str, data: object) -> None:
        text = msgspec.json.encode({"type": kind, "data": data}).decode()
        await self.websocket.send_text(text)

    async def send(self, text: str) -> None:
        frame = msgspec.json.decode(text)
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind in ("snapshot", "update"):
            name = "analytics_snapshot" if kind == "snapshot" else "analytics_update"
            await self._send(name, await analytics_body(self.reader))
        elif kind == "event":
            for event in frame.get("events", []):
                if isinstance(event, dict):
                    await self._send("real_time_event", seed_event(event))
        elif kind == "alert":
            await self._send("alert", {k: v for k, v in frame.items() if k != "type"})
        elif kind == "error":
            await self.websocket.send_text(text)


@router.websocket("/ws")
async def seed_socket(websocket: WebSocket, hub: LiveDep, stats: StatsDep) -> None:
    """Seed 000's live socket: ``analytics_snapshot`` on connect, ``analytics_update``
    while data changes (at most once a second), ``real_time_event`` and ``alert``."""
    gate = gate_of(websocket)
    await websocket.accept()
    try:
        site_id = websocket.query_params.get("site_id") or configured_site(websocket, "event")
        caller = await socket_caller(websocket, gate)
        site = await gate.check(caller.principal, Action.READ_LIVE, site_id)
        tz = site.timezone if site is not None else "UTC"
        client = await hub.connect({"site_id": site_id, "period": "day", "tz": tz})
    except (AccessDenied, NotFound, QueryError) as exc:
        code = (
            NOT_FOUND
            if isinstance(exc, NotFound)
            else POLICY_VIOLATION
            if isinstance(exc, QueryError)
            else {401: UNAUTHORIZED}.get(exc.status, FORBIDDEN)
        )
        await websocket.send_json({"type": "error", "field": exc.field, "reason": exc.reason})
        await websocket.close(code=code, reason=exc.reason[:100])
        return
    translator = Translator(websocket, Reader(stats, site_id, tz, "day"))
    sender = asyncio.create_task(client.run_sender(translator.send))
    receiver = asyncio.create_task(_drain(websocket))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sender.cancel()
        receiver.cancel()
        await hub.disconnect(client)
    for task in (sender, receiver):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    with contextlib.suppress(Exception):  # the peer may be gone already
        await websocket.close()


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
