"""What CloudFront and browsers may keep of the STAC and raster answers."""

from __future__ import annotations

import asyncio

import pytest

from stacube_services.cache import IMMUTABLE, CacheHeaders, cache_control


@pytest.mark.parametrize(("method", "path", "status", "credentials", "api", "expected"), [
    ("GET", "/collections/out/items/a/tiles/WebMercatorQuad/1/2/3.png", 200, False, "raster", IMMUTABLE),
    ("GET", "/collections/src/items/a/tiles/WebMercatorQuad/1/2/3.png", 200, False, "raster", "public, max-age=86400"),
    ("GET", "/collections/src/tiles/WebMercatorQuad/1/2/3.png", 200, False, "raster", "public, max-age=300"),
    ("GET", "/searches/abc/masked/tiles/WebMercatorQuad/1/2/3.png", 200, False, "raster", "public, max-age=300"),
    ("GET", "/search", 200, False, "stac", "public, max-age=60"),
    ("GET", "/collections/src/items", 200, False, "stac", "public, max-age=60"),
    ("GET", "/collections", 200, False, "stac", "public, max-age=300"),
    ("POST", "/search", 200, False, "stac", "no-store"),
    ("GET", "/collections/nope", 404, False, "stac", "no-store"),
    ("GET", "/search", 200, True, "stac", "private, max-age=60"),
])
def test_cache_control(method, path, status, credentials, api, expected):
    derived = lambda collection: collection == "out"  # noqa: E731
    assert cache_control(method, path, status, credentials=credentials, api=api, derived=derived) == expected


def run(app, path: str, headers=()) -> dict:
    sent = {}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        if message["type"] == "http.response.start":
            sent.update({k.decode(): v.decode() for k, v in message["headers"]})

    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": list(headers)}
    asyncio.run(app(scope, receive, send))
    return sent


async def ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def test_only_the_apps_own_paths_are_marked():
    app = CacheHeaders(ok, api="stac", prefix="/stac")
    assert run(app, "/stac/search")["cache-control"] == "public, max-age=60"
    assert "cache-control" not in run(app, "/jobs/")  # another API mounted on the STAC app
    assert run(app, "/stac/search", [(b"x-api-key", b"k")])["cache-control"] == "private, max-age=60"


def test_answers_vary_with_the_credentials():
    app = CacheHeaders(ok, api="raster")
    assert run(app, "/collections/x/tiles/WebMercatorQuad/1/1/1.png")["vary"] == "Authorization, X-API-Key"

    async def gzipped(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"vary", b"Accept-Encoding"), (b"vary", b"authorization")]})
        await send({"type": "http.response.body", "body": b""})

    assert run(CacheHeaders(gzipped, api="raster"), "/")["vary"] == "Accept-Encoding, authorization, X-API-Key"
