"""The web chat client, served by the gateway: `/` is the page, `/app/<file>` its script and
styles. Plain HTML, CSS and ES modules shipped as package data (no build step, nothing fetched
from elsewhere at run time); the page talks to the public API only (REST + `/v1/ws`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

#: Same-origin everything; `connect-src 'self'` also covers the page's own ws:/wss: origin.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of `static/` by name, read once (they are a few kilobytes)."""
    assets: dict[str, Asset] = {}
    for entry in resources.files(__name__).joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            assets[entry.name] = Asset(body, _TYPES[suffix], etag)
    return assets


def _respond(request: web.Request, asset: Asset) -> web.Response:
    headers = {
        # Revalidated on every load (cheap with the ETag), so a new release shows at once.
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    }
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
    )


def add_webapp_routes(app: web.Application) -> None:
    """`GET /` (the page) and `GET /app/{name}` (its files) on `app`."""
    assets = load_assets()
    index = assets["index.html"]

    async def page(request: web.Request) -> web.Response:
        return _respond(request, index)

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return _respond(request, found)

    app.router.add_get("/", page)
    app.router.add_get("/app/{name}", asset)
