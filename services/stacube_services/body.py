"""The one ASGI request/response body helper of the HTTP apps.

Middlewares that look at a request body (size limits, filter bounds, search rewrites, JSON
checks) read it with :func:`read_body` - which stops at a size limit instead of buffering
whatever a client sends - and hand it on with :func:`replay`. :func:`rewrite_json_response`
replaces the JSON body of a 200 answer (listings narrowed to what the caller may see).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from stacube.errors import StacubeError


class PayloadTooLarge(StacubeError):
    """A request body above the route's size limit (answered before it is read in full)."""

    status_code = 413


def content_length(scope) -> int | None:
    """The request's ``Content-Length`` header, or None when absent or not a number."""
    for key, value in scope.get("headers") or []:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive, limit: int | None = None) -> tuple[bytes, list[dict]]:
    """The whole request body, and the messages after it (to replay).

    Args:
        limit: the most bytes accepted (None: no limit).

    Raises:
        PayloadTooLarge: the body is longer than ``limit`` (reading stops there).
    """
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks), []


def replay(body: bytes, tail: Iterable[dict] = ()):
    """A ``receive`` that hands ``body`` (then ``tail``) to the app again."""
    pending = [{"type": "http.request", "body": body, "more_body": False}, *tail]

    async def receive():
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive


def with_body(scope, body: bytes) -> dict:
    """The scope with its ``content-length`` set for a replaced body."""
    scope = dict(scope)
    headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    scope["headers"] = headers
    return scope


async def rewrite_json_response(app, scope, receive, send, rewrite, *, fallback: bytes) -> None:
    """Run ``app`` and send its response, the JSON body of a 200 replaced by ``rewrite(document)``
    (``fallback`` when the body is not the JSON ``rewrite`` expects); other statuses pass as they are."""
    start: dict = {}
    chunks: list[bytes] = []

    async def capture(message):
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    body = b"".join(chunks)
    if start.get("status") == 200:
        try:
            body = json.dumps(rewrite(json.loads(body))).encode()
        except (ValueError, AttributeError, TypeError):
            body = fallback
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
    await send({"type": "http.response.body", "body": body})
