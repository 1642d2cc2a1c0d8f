"""The dashboard and the tracker script, served from the package: no CDN, no Node at run time.

``/`` is the dashboard page (no-cache, a strict Content-Security-Policy so that even a slip
past ``textContent`` could not run a script), ``/static/...`` its assets (versioned by a
content hash in the page, so they may be cached for long), ``/js/hitstream.js`` the tracker.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).parent / "static"
TRACKER: Final = STATIC_DIR / "js" / "hitstream.js"
_ASSETS: Final = ("app.js", "app.css", "vendor/uplot.min.js", "vendor/uplot.min.css")
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'; object-src 'none'"
)
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def asset_version(static_dir: Path = STATIC_DIR) -> str:
    """A short hash of the dashboard's assets: changes whenever one of them does."""
    digest = hashlib.blake2b(digest_size=6)
    for name in _ASSETS:
        digest.update((static_dir / name).read_bytes())
    return digest.hexdigest()


class _CachedStatic(StaticFiles):
    """Static files with a long cache lifetime: the page links them with ``?v=<hash>``."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount(app: Starlette) -> None:
    """Add ``/``, ``/static`` and ``/js/hitstream.js`` to the app (reads the files once)."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace("__V__", asset_version())

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

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

    app.add_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route("/js/hitstream.js", tracker, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/static", _CachedStatic(directory=STATIC_DIR), name="static")
