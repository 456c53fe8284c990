"""STAC API request and response adjustments stac-fastapi-pgstac leaves to the application.

* Query extension: the string operators ``startsWith``, ``endsWith``, ``contains`` and the ``in``
  operator (part of the extension, refused by stac-fastapi-pgstac's request model and not
  evaluated by pgSTAC's ``query``) are rewritten into an equivalent CQL2 filter (``like`` /
  ``in``), joined with ``and`` to any filter the request already has.
* ``POST /search``: ``collections`` given as one string is read as a one-element list;
  ``"fields": null`` and a body that is not a JSON object answer 400; a CQL2-text ``filter``
  (``"filter-lang": "cql2-text"``, or a string filter) is converted to CQL2-JSON, which is what
  stac-fastapi-pgstac's POST model takes; one that does not parse answers 400 with the parser's
  reason.
* Transactions: a request without a body answers 400; an item body without ``links`` gets ``"links": []`` (the server writes its own
  links; pgSTAC does not store them).
* Item search and item list responses carry ``application/geo+json`` also when the fields
  extension is used (stac-fastapi answers ``application/json`` then).
* Items written through the transaction routes refine their collection as registered items do
  (``item_assets``, summaries, queryables: :meth:`stacube.catalog.pgstac.Catalog.describe_items`),
  once the write succeeded.
* The asset route's files are answered uncompressed (byte ranges and ``Content-Length`` are the
  file's: the API's Brotli/gzip compression would change both).
* ``GET /collections/{id}/queryables`` lists every property of the collection's items with its
  JSON type: pgSTAC's queryables (the typed ones, :mod:`stacube.catalog.derive`) completed
  with the properties registration recorded (``stacube:from_items.properties``).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode

import orjson

from stacube.core.filters import cql2_json
from stacube.errors import InvalidInput
from stacube_services.body import read_body, replay
from stacube_services.errors import error_response

STRING_OPS = {"startsWith", "endsWith", "contains", "in"}
ITEMS_PATH = re.compile(r"/collections/[^/]+/items(/[^/]+)?$")
QUERYABLES_PATH = re.compile(r"^/collections/([^/]+)/queryables/?$")
COLLECTIONS_PATH = re.compile(r"/collections(/|$)")
#: The asset route (:mod:`stacube_services.assets`).
ASSET_PATH = re.compile(r"^/collections/[^/]+/items/[^/]+/assets/")
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


def cql2_text_to_json(text) -> tuple[dict, str]:
    """A POST body's CQL2-text ``filter`` as ``(CQL2-JSON, "cql2-json")``.

    Raises:
        ValueError: not a string, or the text does not parse (the parser's reason).
    """
    if isinstance(text, dict):  # "filter-lang": "cql2-text" with a JSON filter: keep the filter
        return text, "cql2-json"
    if not isinstance(text, str):
        raise ValueError('filter: with "filter-lang": "cql2-text" the filter is a CQL2 text string')
    try:
        return cql2_json(text), "cql2-json"
    except InvalidInput as exc:
        raise ValueError(f"{exc.message} (POST bodies take cql2-json; cql2-text is converted)") from exc


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
        written: list[dict] = []
        if (method == "POST" and (is_search or is_items)) or (method == "PUT" and is_items):
            body, tail = await read_body(receive)
            try:
                body = self._rewrite_body(body, search=is_search)
            except ValueError as exc:
                await error_response(400, "InvalidParameter", str(exc))(scope, receive, send)
                return
            receive = replay(body, tail)
            if not is_search:
                written = _items_of(body, path)
        if method in ("GET", "POST") and (is_search or is_items):
            send = _geojson_send(send)
        if ASSET_PATH.match(path):  # file bytes as they are: ranges and lengths of the file
            scope = _uncompressed(scope)
        queryables = QUERYABLES_PATH.match(path) if method == "GET" else None
        if queryables:
            send = _queryables_send(send, scope, unquote(queryables.group(1)))
            scope = _uncompressed(scope)  # an answer to complete (a queryables document is small)
        status: list[int] = []
        if written:
            send = _status_send(send, status)
        await self.app(scope, receive, send)
        if written and status and status[0] in (200, 201):
            await describe_written(scope, written)

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
        if isinstance(doc.get("filter"), str) or doc.get("filter-lang") == "cql2-text":
            doc["filter"], doc["filter-lang"] = cql2_text_to_json(doc.get("filter"))
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


def _uncompressed(scope):
    """``scope`` without ``Accept-Encoding``: the answer is not compressed on its way out."""
    return {**scope, "headers": [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]}


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


async def recorded_properties(scope, collection_id: str) -> dict:
    """``{property: JSON Schema}`` registration recorded for a collection (empty when none)."""
    app = scope.get("app")
    pool = getattr(getattr(app, "state", None), "readpool", None)
    if pool is None:
        return {}
    value = await pool.fetchval(
        "SELECT content->'stacube:from_items'->'properties' FROM pgstac.collections WHERE id = $1",
        collection_id)
    doc = orjson.loads(value) if isinstance(value, (str, bytes)) else value
    return doc if isinstance(doc, dict) else {}


def _queryables_send(send, scope, collection_id: str):
    """Completes a 200 queryables answer with the recorded properties (pgSTAC's win)."""
    start: dict | None = None
    chunks: list[bytes] = []

    async def wrapped(message):
        nonlocal start
        if message["type"] == "http.response.start":
            if message["status"] != 200:
                await send(message)
                return
            start = message
            return
        if start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        try:
            doc = orjson.loads(body)
            extra = await recorded_properties(scope, collection_id)
            if isinstance(doc, dict) and isinstance(doc.get("properties"), dict) and extra:
                doc["properties"] = {**extra, **doc["properties"]}
                body = orjson.dumps(doc)
        except orjson.JSONDecodeError:
            pass
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return wrapped


def _items_of(body: bytes, path: str) -> list[dict]:
    """The items of a transaction body (an Item or an ItemCollection), with their collection."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    match = re.search(r"/collections/([^/]+)/items", path)
    cid = unquote(match.group(1)) if match else None
    features = doc.get("features") if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" else [doc]
    return [dict(f, collection=f.get("collection") or cid) for f in features or []
            if isinstance(f, dict) and f.get("type") == "Feature"]


def _status_send(send, status: list[int]):
    async def wrapped(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
        await send(message)

    return wrapped


async def describe_written(scope, items: list[dict]) -> None:
    """Refine the items' collections from them (a worker thread; a failure is logged, the
    items are stored all the same)."""
    import logging

    from anyio import to_thread

    from stacube.catalog.pgstac import Catalog  # lazy: the STAC function starts without psycopg

    settings = getattr(getattr(scope.get("app"), "state", None), "stacube_settings", None)
    if settings is None:
        return
    try:
        await to_thread.run_sync(Catalog(settings).describe_items, items)
    except Exception:  # noqa: BLE001 - the write succeeded; its description can be redone
        logging.getLogger("stacube").exception("describing the collection of written items failed")
