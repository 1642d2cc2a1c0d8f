"""Security headers on every HTTP answer, API and errors included, unless a route set its own.

The dashboard page and the docs page set a full Content-Security-Policy of their own; every
other answer (JSON, metrics, errors) gets one that allows nothing (``default-src 'none'``):
an API answer is never a document to render or frame. ``Cache-Control: no-store`` is the
default too: stats, site lists and readiness are live and may be private, so no browser or
shared cache keeps them; static assets and the tracker set their own long lifetimes. HSTS
belongs to whatever terminates TLS in front of hitstream, not to a plain-HTTP listener.
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULTS: Final = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "cross-origin"),
    ("cache-control", "no-store"),
)
"""``Cross-Origin-Resource-Policy: cross-origin`` because the tracker and the events API are
called from other sites on purpose (CORS decides who may read the answers)."""


class SecurityHeaders:
    """Pure ASGI middleware: adds each default header the response does not already have."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DEFAULTS:
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
