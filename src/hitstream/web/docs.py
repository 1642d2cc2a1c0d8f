"""The API docs page (``/docs``): Swagger UI served from the package, no third-party CDN.

FastAPI's own page loads Swagger UI from a public CDN, so opening the docs told a third party
who reads them, and broke offline or behind a strict egress policy. Here the assets are
vendored (``static/vendor/swagger-ui``, swagger-ui-dist from npm with its Apache-2.0 licence
and notice), the page starts it from a file (no inline script) and its Content-Security-Policy
lets it talk to this server only. Served by every role: each has an API to document.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

STATIC_DIR: Final = Path(__file__).parent / "static"
ASSETS: Final = {
    "swagger-ui-bundle.js": (
        STATIC_DIR / "vendor/swagger-ui/swagger-ui-bundle.js",
        "text/javascript",
    ),
    "swagger-ui.css": (STATIC_DIR / "vendor/swagger-ui/swagger-ui.css", "text/css"),
    "favicon.png": (STATIC_DIR / "vendor/swagger-ui/favicon-32x32.png", "image/png"),
    "docs-init.js": (STATIC_DIR / "docs-init.js", "text/javascript"),
    "LICENSE": (STATIC_DIR / "vendor/swagger-ui/LICENSE", "text/plain"),
    "NOTICE": (STATIC_DIR / "vendor/swagger-ui/NOTICE", "text/plain"),
}
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
"""Swagger UI sets inline styles and draws data: images; it runs no inline script."""

PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title>
<link rel="icon" href="/docs/assets/favicon.png?v={v}">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css?v={v}">
</head><body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js?v={v}"></script>
<script src="/docs/assets/docs-init.js?v={v}"></script>
</body></html>
"""


def _version() -> str:
    digest = hashlib.blake2b(digest_size=6)
    for path, _ in ASSETS.values():
        digest.update(path.read_bytes())
    return digest.hexdigest()


def mount(app: Starlette, title: str) -> None:
    """Add ``/docs`` and ``/docs/assets/<name>`` (the app's ``docs_url`` must be None)."""
    page = PAGE.format(title=title, v=_version())

    async def docs_page(request: Request) -> Response:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": CSP,
                "Cache-Control": "no-cache",
                "Referrer-Policy": "same-origin",
            },
        )

    async def asset(request: Request) -> Response:
        found = ASSETS.get(request.path_params["name"])
        if found is None:
            raise HTTPException(status_code=404, detail="not found")
        path, media_type = found
        return FileResponse(
            path,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    app.add_route("/docs", docs_page, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_route("/docs/assets/{name}", asset, methods=["GET", "HEAD"], include_in_schema=False)
