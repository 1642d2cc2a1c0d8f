"""The dashboard and the tracker script, served from the package: no CDN, no Node at run time.

The pages (``index.html``: the dashboard, ``sites.html``: sites, keys and shared links) are
served by ``web/pages.py`` with ``page_response`` (no-cache, a strict Content-Security-Policy
so that even a slip past ``textContent`` could not run a script); ``/static/...`` holds their
assets (versioned by a content hash in the page, so they may be cached for long) and
``/js/hitstream.js`` is the tracker.
"""

from __future__ import annotations

import functools
import hashlib
import html
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).parent / "static"
TRACKER: Final = STATIC_DIR / "js" / "hitstream.js"
_ASSETS: Final = (
    "app.js",
    "app.css",
    "goals.js",
    "sites.js",
    "vendor/uplot.min.js",
    "vendor/uplot.min.css",
)
ICON: Final = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Ccircle cx='8' cy='8' r='6' fill='%234f6bed'/%3E%3C/svg%3E"
)
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@functools.cache
def asset_version(static_dir: Path = STATIC_DIR) -> str:
    """A short hash of the dashboard's assets: changes whenever one of them does."""
    digest = hashlib.blake2b(digest_size=6)
    for name in _ASSETS:
        digest.update((static_dir / name).read_bytes())
    return digest.hexdigest()


@functools.cache
def _page_text(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8").replace("__V__", asset_version())


def page_response(name: str = "index.html", share: str | None = None) -> HTMLResponse:
    """A page of the dashboard; ``share``: the read-only dashboard of that one site."""
    text = _page_text(name)
    if share is not None:
        text = text.replace("<body>", f'<body data-share="{html.escape(share, quote=True)}">', 1)
    return HTMLResponse(text, headers=PAGE_HEADERS)


class _CachedStatic(StaticFiles):
    """Static files with a long cache lifetime: the page links them with ``?v=<hash>``."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount(app: Starlette) -> None:
    """Add ``/static`` and ``/js/hitstream.js`` to the app."""

    async def tracker(request: Request) -> Response:
        return FileResponse(
            TRACKER,
            media_type="application/javascript",
            headers={
                "Cache-Control": "public, max-age=3600",
                "Access-Control-Allow-Origin": "*",
                "X-Content-Type-Options": "nosniff",
            },
        )

    app.add_route("/js/hitstream.js", tracker, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/static", _CachedStatic(directory=STATIC_DIR), name="static")
