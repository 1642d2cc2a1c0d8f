"""The live channel: WebSocket ``/api/v1/live`` for dashboards, and its own figures.

Each socket gets two loops: a sender that drains the client's bounded queue (so a slow socket
only ever slows itself) and a receiver for ``set`` messages. The hub is bootstrap's (built
with the stats service, store, fan-out and quality source, closed by the runtime).

Access: the dashboard's login cookie (only from the dashboard's own origin: a page elsewhere
cannot ride on it), a key in ``Authorization: Bearer`` or as a ``Sec-WebSocket-Protocol``
value next to ``hitstream`` (browsers cannot set headers on a WebSocket), a shared link's
``auth`` parameter, or nothing for a public site. A refused socket is accepted and closed at
once with a code that says why: 4401 (no or an unknown credential), 4403 (it may not read
this site, or a cookie from a foreign origin), 4404 (no such site). A ``set`` to another site
is checked the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from hitstream.domain.access import Action
from hitstream.errors import AccessDenied, NotFound, QueryError
from hitstream.services.access import Caller, Credentials, Gatekeeper
from hitstream.services.live import LiveHub
from hitstream.services.live_client import LiveClient
from hitstream.web.auth import SITE_RESPONSES, CallerDep, GateDep, credentials_of, gate_of
from hitstream.web.deps import LiveDep

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["live"])

POLICY_VIOLATION = 1008
UNAUTHORIZED = 4401
FORBIDDEN = 4403
NOT_FOUND = 4404
PROTOCOL = "hitstream"


def _offered(websocket: WebSocket) -> list[str]:
    header = websocket.headers.get("sec-websocket-protocol", "")
    return [part.strip() for part in header.split(",") if part.strip()]


async def socket_caller(websocket: WebSocket, gate: Gatekeeper) -> Caller:
    given = credentials_of(websocket)
    keys = [p for p in _offered(websocket) if p != PROTOCOL]
    if not given.bearer and keys:
        given = Credentials(bearer=keys[0], cookie=given.cookie, share=given.share)
    caller = await gate.resolve(given)
    if caller.via == "cookie":
        origin = websocket.headers.get("origin", "")
        host = websocket.headers.get("host", "")
        if origin and origin.split("://", 1)[-1] != host:
            raise AccessDenied(403, "origin", "the login cookie is good on the dashboard only")
    return caller


async def _may_view(gate: Gatekeeper, caller: Caller, site_id: str) -> str | None:
    """None if the caller may watch the site live, else why not."""
    try:
        await gate.check(caller.principal, Action.READ_LIVE, site_id)
    except (AccessDenied, NotFound) as exc:
        return exc.reason
    return None


async def _receive(
    websocket: WebSocket, hub: LiveHub, client: LiveClient, gate: Gatekeeper, caller: Caller
) -> None:
    async def may_view(site_id: str) -> str | None:
        return await _may_view(gate, caller, site_id)

    while True:
        await hub.receive(client, await websocket.receive_text(), may_view=may_view)


@router.websocket("/live")
async def live(websocket: WebSocket, hub: LiveDep) -> None:
    """Frames: ``snapshot`` (on connect and after ``set``), ``update`` (at most 1/s while
    data changes), ``event`` (sampled, ``skipped`` counts the rest), ``alert``, ``error``.
    Send ``{"type": "set", "period": ..., "filters": ...}`` to change the view."""
    gate = gate_of(websocket)
    subprotocol = PROTOCOL if PROTOCOL in _offered(websocket) else None
    await websocket.accept(subprotocol=subprotocol)
    try:
        caller = await socket_caller(websocket, gate)
        site = await gate.check(
            caller.principal, Action.READ_LIVE, websocket.query_params.get("site_id", "")
        )
    except (AccessDenied, NotFound) as exc:
        code = (
            NOT_FOUND
            if isinstance(exc, NotFound)
            else {401: UNAUTHORIZED}.get(exc.status, FORBIDDEN)
        )
        await websocket.send_json({"type": "error", "field": exc.field, "reason": exc.reason})
        await websocket.close(code=code, reason=exc.reason[:100])
        return
    try:
        params = {k: v for k, v in websocket.query_params.items() if k != "auth"}
        if not params.get("tz") and site is not None:
            params["tz"] = site.timezone  # the site's own time zone unless asked otherwise
        client = await hub.connect(params)
    except QueryError as exc:
        await websocket.send_json({"type": "error", "field": exc.field, "reason": exc.reason})
        await websocket.close(code=POLICY_VIOLATION, reason=exc.field)
        return
    sender = asyncio.create_task(client.run_sender(websocket.send_text))
    receiver = asyncio.create_task(_receive(websocket, hub, client, gate, caller))
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


@router.get(
    "/live/stats",
    summary="Live channel figures: clients, views, latency p50/p99 (admins)",
    responses={k: v for k, v in SITE_RESPONSES.items() if k != 404},
)
async def live_stats(hub: LiveDep, caller: CallerDep, gate: GateDep) -> dict[str, Any]:
    gate.require(caller.principal, Action.READ_ALL)
    return hub.summary()
