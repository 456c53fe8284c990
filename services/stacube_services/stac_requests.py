"""STAC API request and response adjustments stac-fastapi-pgstac leaves to the application.

* Query extension: the string operators ``startsWith``, ``endsWith``, ``contains`` and the ``in``
  operator (part of the extension, refused by stac-fastapi-pgstac's request model and not
  evaluated by pgSTAC's ``query``) are rewritten into an equivalent CQL2 filter (``like`` /
  ``in``), joined with ``and`` to any filter the request already has.
* ``POST /search``: ``collections`` given as one string is read as a one-element list;
  ``"fields": null`` and a body that is not a JSON object answer 400.
* Transactions: a request without a body answers 400; an item body without ``links`` gets ``"links": []`` (the server writes its own
  links; pgSTAC does not store them).
* Item search and item list responses carry ``application/geo+json`` also when the fields
  extension is used (stac-fastapi answers ``application/json`` then).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

import orjson

from stacube_services.body import read_body, replay
from stacube_services.errors import error_response

STRING_OPS = {"startsWith", "endsWith", "contains", "in"}
ITEMS_PATH = re.compile(r"/collections/[^/]+/items(/[^/]+)?$")
COLLECTIONS_PATH = re.compile(r"/collections(/|$)")
#: Transactions: a collection, an item, items (single, ItemCollection or bulk).
TRANSACTION_PATH = re.compile(r"^/collections(/[^/]+(/items(/[^/]+)?|/bulk_items)?)?/?$")


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def split_query(query: dict) -> tuple[dict, list[dict]]:
    """``query`` without its string/``in`` operators, and those operators as CQL2-JSON.

    Raises:
        ValueError: an operator has a value of the wrong type.
    """
    kept: dict = {}
    filters: list[dict] = []
    for prop, ops in query.items():
        if not isinstance(ops, dict):
            kept[prop] = ops
            continue
        rest = {}
        for op, value in ops.items():
            if op not in STRING_OPS:
                rest[op] = value
                continue
            target = {"property": prop}
            if op == "in":
                if not isinstance(value, list):
                    raise ValueError(f"query: {prop}.in must be an array")
                filters.append({"op": "in", "args": [target, value]})
                continue
            if not isinstance(value, str):
                raise ValueError(f"query: {prop}.{op} must be a string")
            pattern = {"startsWith": "{}%", "endsWith": "%{}", "contains": "%{}%"}[op]
            filters.append({"op": "like", "args": [target, pattern.format(_like_escape(value))]})
        if rest:
            kept[prop] = rest
    return kept, filters


def _join(existing, lang: str | None, extra: list[dict]):
    """The request's filter with ``extra`` CQL2-JSON clauses added (and the filter language)."""
    if existing in (None, "", {}):
        expr = extra[0] if len(extra) == 1 else {"op": "and", "args": extra}
        return expr, "cql2-json"
    if isinstance(existing, str) and lang != "cql2-json":
        import cql2

        text = " AND ".join(f"({cql2.Expr(e).to_text()})" for e in extra)
        return f"({existing}) AND {text}", "cql2-text"
    if isinstance(existing, str):
        existing = orjson.loads(existing)
    return {"op": "and", "args": [existing, *extra]}, "cql2-json"


class StacRequestMiddleware:
    """Applies the adjustments listed in the module docstring (``prefix_path``: the API root)."""

    def __init__(self, app, *, prefix_path: str = ""):
        self.app = app
        self.prefix = prefix_path

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        path = scope["path"][len(self.prefix):]
        method = scope["method"]
        is_search = path in ("/search", "/search/")
        is_items = bool(ITEMS_PATH.search(path))
        if method in ("POST", "PUT", "PATCH") and COLLECTIONS_PATH.match(path):
            body, tail = await read_body(receive)
            if not body.strip():  # stac-fastapi's transaction routes fail on a missing body
                await error_response(400, "InvalidParameter", f"{method} {path} needs a JSON body")(
                    scope, receive, send)
                return
            receive = replay(body, tail)
        if method == "GET" and (is_search or is_items):
            try:
                scope = self._rewrite_get(scope)
            except ValueError as exc:
                await error_response(400, "InvalidParameter", str(exc))(scope, receive, send)
                return
        elif (method == "POST" and (is_search or is_items)) or (method == "PUT" and is_items):
            body, tail = await read_body(receive)
            try:
                body = self._rewrite_body(body, search=is_search)
            except ValueError as exc:
                await error_response(400, "InvalidParameter", str(exc))(scope, receive, send)
                return
            receive = replay(body, tail)
        if method in ("GET", "POST") and (is_search or is_items):
            send = _geojson_send(send)
        await self.app(scope, receive, send)

    @staticmethod
    def _rewrite_get(scope):
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        raw = next((v for k, v in pairs if k == "query"), None)
        if not raw:
            return scope
        try:
            query = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return scope  # stac-fastapi answers with its own reason
        if not isinstance(query, dict):
            return scope
        kept, extra = split_query(query)
        if not extra:
            return scope
        params = dict(pairs)
        expr, lang = _join(params.get("filter"), params.get("filter-lang"), extra)
        out = [(k, v) for k, v in pairs if k not in ("query", "filter", "filter-lang")]
        if kept:
            out.append(("query", orjson.dumps(kept).decode()))
        out.append(("filter", expr if isinstance(expr, str) else orjson.dumps(expr).decode()))
        out.append(("filter-lang", lang))
        scope = dict(scope)
        scope["query_string"] = urlencode(out).encode("latin-1")
        return scope

    @staticmethod
    def _rewrite_body(body: bytes, *, search: bool) -> bytes:
        try:
            doc = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            return body  # JsonBodyMiddleware answers 400
        if not isinstance(doc, dict):
            if search and doc is not None:  # stac-fastapi fails on other JSON values (a 500)
                raise ValueError("the search body must be a JSON object")
            return body
        changed = False
        if not search:
            if doc.get("type") == "Feature" and "links" not in doc:
                doc["links"] = []
                changed = True
            elif doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
                for feature in doc["features"]:
                    if isinstance(feature, dict) and "links" not in feature:
                        feature["links"] = []
                        changed = True
            return orjson.dumps(doc) if changed else body
        if "fields" in doc and doc["fields"] is None:
            raise ValueError("fields must be an object with include and/or exclude")
        if isinstance(doc.get("collections"), str):
            doc["collections"] = [doc["collections"]]
            changed = True
        if isinstance(doc.get("query"), dict):
            kept, extra = split_query(doc["query"])
            if extra:
                doc["filter"], doc["filter-lang"] = _join(doc.get("filter"), doc.get("filter-lang"), extra)
                if kept:
                    doc["query"] = kept
                else:
                    doc.pop("query")
                changed = True
        return orjson.dumps(doc) if changed else body


def _geojson_send(send):
    async def wrapped(message):
        if message["type"] == "http.response.start" and message["status"] in (200, 201):
            headers = [(k, v) for k, v in message.get("headers", [])]
            for i, (k, v) in enumerate(headers):
                if k.lower() == b"content-type" and v.split(b";")[0].strip() == b"application/json":
                    headers[i] = (k, b"application/geo+json")
                    message = {**message, "headers": headers}
                    break
        await send(message)

    return wrapped
