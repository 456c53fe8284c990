"""Request and response bounds shared by the HTTP apps (docs/security.md lists them).

:class:`RequestLimits` runs first in every app and refuses, before any route or parser sees the
request:

* a path or query string holding a NUL or another control character (400; PostgreSQL cannot
  store them, and they have no meaning in ids);
* a body above the size limit (413): ``STACUBE_MAX_BODY_SIZE`` (searches, registrations, jobs,
  time series) or ``STACUBE_MAX_TRANSACTION_SIZE`` (the requests ``large_body`` says are STAC
  transactions); the ``Content-Length`` is checked first, then the bytes as they arrive;
* a CQL2 filter beyond its bounds (400, :func:`stacube.core.filters.check_filter`), in the
  ``filter`` query parameter of any route or the ``filter`` member of a JSON body - every route
  that takes a filter (STAC search, item lists, collection search, raster collection mosaics,
  search registration) is covered because none is named.

:class:`ResponseSizeLimit` answers 400 with the size instead of a raster answer larger than
``STACUBE_MAX_RESPONSE_SIZE`` (what an AWS Lambda response can carry).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson

from stacube.core.filters import FilterLimits, check_filter
from stacube.errors import InvalidInput, StacubeError
from stacube_services.body import PayloadTooLarge, content_length, read_body, replay
from stacube_services.errors import error_response

CHECKED = "stacube.limits"
BODY_METHODS = {"POST", "PUT", "PATCH"}


def _control(raw: bytes) -> bool:
    return any(b < 32 or b == 127 for b in raw)


class RequestLimits:
    """See the module docstring.

    Args:
        settings: the limits (``max_body_size``, ``max_transaction_size``, ``filter_max_*``).
        large_body: ``large_body(scope)`` - True for requests that may carry the larger body.
    """

    def __init__(self, app, *, settings, large_body: Callable[[dict], bool] | None = None):
        self.app = app
        self.body_limit = int(settings.max_body_size)
        self.large_limit = int(settings.max_transaction_size)
        self.filters = FilterLimits.from_settings(settings)
        self.large_body = large_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get(CHECKED):
            await self.app(scope, receive, send)
            return
        scope[CHECKED] = True
        try:
            self.check_target(scope)
            if scope["method"] in BODY_METHODS:
                receive = await self.check_body(scope, receive)
        except StacubeError as exc:
            await error_response(exc.status_code, type(exc).__name__, exc.message)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check_target(self, scope) -> None:
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        if _control(unquote_to_bytes(raw_path)) or _control(scope["path"].encode("utf-8", "surrogateescape")):
            raise InvalidInput("the path holds a control character (NUL, newline...): no id has one")
        query = scope.get("query_string", b"")
        if _control(unquote_to_bytes(query.replace(b"+", b" "))):
            raise InvalidInput("a query parameter holds a control character (NUL, newline...)")
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        params = dict(pairs)
        lang = params.get("filter-lang") or params.get("filter_lang")
        for key, value in pairs:
            if key == "filter":
                check_filter(value, lang or None, self.filters)

    async def check_body(self, scope, receive):
        limit = self.large_limit if self.large_body is not None and self.large_body(scope) else self.body_limit
        declared = content_length(scope)
        if declared is not None and declared > limit:
            raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit} bytes")
        body, tail = await read_body(receive, limit)
        if b'"filter"' in body:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None  # the app answers with its own reason
            if isinstance(doc, dict) and "filter" in doc:
                lang = doc.get("filter-lang") or doc.get("filter_lang")
                check_filter(doc["filter"], lang if isinstance(lang, str) else None, self.filters)
        return replay(body, tail)


class ResponseSizeLimit:
    """Holds a response back until it is complete; one larger than ``limit`` bytes is replaced
    by a 400 naming its size (see the module docstring)."""

    def __init__(self, app, *, limit: int):
        self.app = app
        self.limit = int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []
        size = 0
        refused = False

        async def held(message):
            nonlocal start, size, refused
            if refused:
                size += len(message.get("body", b""))
                return
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                refused = True
                chunks.clear()
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                await send(start)
                await send({"type": "http.response.body", "body": b"".join(chunks)})

        await self.app(scope, receive, held)
        if refused:
            await error_response(400, "ResponseTooLarge", (
                f"the answer would be {size} bytes; the limit is {self.limit} bytes (STACUBE_MAX_RESPONSE_SIZE, "
                "what a response may carry): ask for fewer pixels (max_size, width, height) or a compressed format"
            ))(scope, receive, send)
