"""The web client's files as the gateway serves them: types, caching, the page's CSP, 404s."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from realchat.gateway.rest import errors_as_json
from realchat.gateway.webapp import CONTENT_SECURITY_POLICY, add_webapp_routes, load_assets


@pytest_asyncio.fixture(loop_scope="session")
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[errors_as_json])
    add_webapp_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def test_the_package_ships_every_file_the_page_loads() -> None:
    assets = load_assets()
    page = assets["index.html"].body.decode()
    assert {"index.html", "app.js", "timeline.js", "style.css"} <= set(assets)
    assert 'src="/app/app.js"' in page
    assert 'href="/app/style.css"' in page
    assert 'from "./timeline.js"' in assets["app.js"].body.decode()


async def test_the_page_is_html_never_cached_stale_and_locked_to_its_origin(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["connect-src"] == "'self'"
    assert "<!doctype html>" in (await response.text()).lower()


async def test_scripts_and_styles_have_their_types_and_revalidate_by_etag(
    client: TestClient[web.Request, web.Application],
) -> None:
    for name, content_type in (("app.js", "text/javascript"), ("style.css", "text/css")):
        response = await client.get(f"/app/{name}")
        assert response.status == 200, name
        assert response.content_type == content_type
        etag = response.headers["ETag"]
        again = await client.get(f"/app/{name}", headers={"If-None-Match": etag})
        assert again.status == 304
        assert await again.read() == b""


async def test_unknown_files_are_the_contracts_404(
    client: TestClient[web.Request, web.Application],
) -> None:
    for path in ("/app/missing.js", "/app/../webapp/__init__.py", "/app/"):
        response = await client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"
