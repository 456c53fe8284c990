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


def answer(body: bytes, *, status: int = 200, chunks: int = 1, headers=()):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *headers]})
        for i in range(chunks):
            await send({"type": "http.response.body", "body": body, "more_body": i < chunks - 1})
    return app


def exchange(app, path: str, headers=(), method: str = "GET") -> tuple[int, dict, bytes]:
    sent = {"status": None, "headers": {}, "body": b""}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
            sent["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            sent["body"] += message.get("body", b"")

    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": list(headers)}
    asyncio.run(app(scope, receive, send))
    return sent["status"], sent["headers"], sent["body"]


def test_etag_and_not_modified():
    app = CacheHeaders(answer(b'{"a": 1}'), api="stac")
    status, headers, body = exchange(app, "/collections")
    assert status == 200 and body == b'{"a": 1}' and headers["etag"].startswith('"')
    etag = headers["etag"]
    assert exchange(app, "/collections")[1]["etag"] == etag  # the same body, the same ETag
    assert exchange(CacheHeaders(answer(b'{"a": 2}'), api="stac"), "/collections")[1]["etag"] != etag
    for given in (etag, f'"x", {etag}', f"W/{etag}", "*"):
        status, headers, body = exchange(app, "/collections", [(b"if-none-match", given.encode())])
        assert (status, body) == (304, b""), given
        assert headers["etag"] == etag and headers["cache-control"] == "public, max-age=300"
        assert "content-type" not in headers and "content-length" not in headers
    assert exchange(app, "/collections", [(b"if-none-match", b'"other"')])[0] == 200


def test_no_etag_on_what_is_not_cached_or_streamed():
    assert "etag" not in exchange(CacheHeaders(answer(b"{}"), api="stac"), "/search", method="POST")[1]
    assert "etag" not in exchange(CacheHeaders(answer(b"{}", status=404), api="stac"), "/collections/x")[1]
    streamed = CacheHeaders(answer(b"[1]", chunks=3), api="stac")
    status, headers, body = exchange(streamed, "/collections", [(b"if-none-match", b"*")])
    assert status == 200 and body == b"[1][1][1]" and "etag" not in headers
    # an ETag the app set is kept and answers If-None-Match
    tagged = CacheHeaders(answer(b"png", headers=[(b"etag", b'"k1"')]), api="raster")
    assert exchange(tagged, "/collections/c/tiles/WebMercatorQuad/1/0/0.png")[1]["etag"] == '"k1"'
    assert exchange(tagged, "/collections/c/tiles/WebMercatorQuad/1/0/0.png", [(b"if-none-match", b'"k1"')])[0] == 304


def test_answers_vary_with_the_credentials():
    app = CacheHeaders(ok, api="raster")
    assert run(app, "/collections/x/tiles/WebMercatorQuad/1/1/1.png")["vary"] == "Authorization, X-API-Key"

    async def gzipped(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"vary", b"Accept-Encoding"), (b"vary", b"authorization")]})
        await send({"type": "http.response.body", "body": b""})

    assert run(CacheHeaders(gzipped, api="raster"), "/")["vary"] == "Accept-Encoding, authorization, X-API-Key"
