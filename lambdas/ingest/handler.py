"""``ingest`` function: registers what lands under ``s3://<data bucket>/<ingest prefix>``.

Events: S3 ``ObjectCreated:*`` notifications, delivered through the ``ingest`` SQS queue (each
record's ``body`` is the S3 event; batch of up to 10) or directly by S3. ``s3:TestEvent``
messages (sent when a notification is configured) and keys outside ``STACUBE_INGEST_PREFIX``
(``ingest/``) are acknowledged and ignored.

Key layout under the prefix (``<collection>`` is the first folder):

* ``<collection>/**/*.json`` / ``*.geojson``: a STAC Item, an ItemCollection, or a STAC
  Collection; ``*.ndjson`` / ``*.jsonl`` / ``*.geojsonl``: one Item per line;
  ``*.yaml`` / ``*.yml``: an Open Data Cube product definition (a collection). Items without a
  ``collection`` get ``<collection>``; relative asset hrefs are resolved against the object's
  ``s3://`` URL (``../scenes/B04.tif``). Put the COGs such items reference outside the prefix (or
  they are registered as COG items too).
* ``<collection>/<item>/<asset>.tif``: a COG item. The new COGs of a folder in a batch are
  described once, with rio-stac through GDAL's ``/vsis3/`` (asset key = file stem without the
  scene ID the folder name carries), and added to item ``<item>``: the item is read, its assets
  merged and written back in one transaction holding a lock on the item, so COGs of one scene
  arriving in different batches, even at the same time, all end up in it (and no folder is
  listed or described again). The acquisition time comes from the COGs' tags, else a Landsat /
  Sentinel-2 scene ID or ISO date in the item, file or folder names
  (:func:`stacube.catalog.scenes.acquisition_time`; a scene with none is refused), the platform
  from the scene ID. ``<collection>/<name>.tif`` is a one-asset item ``<name>``.

Every href is checked with the read gate (:class:`stacube.access.gate.ReadGate`) before it is
opened or stored: a COG is read only from a key the servers may read, and an item whose asset
hrefs lie outside the read prefixes is a bad object (the raster API would refuse them anyway).

Collections are upserted first (keeping the extent already computed), then every item of the
batch is loaded with pypgstac in one transaction (upsert: delivering an object again changes
nothing). If the catalog rejects the batch, messages are loaded one by one to find the culprit.
An ndjson object larger than :data:`STREAM_BYTES` is streamed, never held whole: every line is
checked first, then the items are loaded :data:`STREAM_CHUNK` at a time (upserts, so a retry
after an interruption changes nothing).

The queue feeds the function batches of up to 100 messages gathered over up to a minute, with at
most two invocations at a time, as eoapi-cdk's STAC loader does: few, large transactions.

Failures: a message whose objects cannot be registered is reported in ``batchItemFailures``;
SQS delivers it again and, after the third delivery, moves it to the ``ingest`` dead-letter
queue. A bad object (malformed JSON, invalid item, unreadable COG) is retried at once, so it
reaches the dead-letter queue within seconds; an item of a collection not registered yet, or an
unreachable database, is retried after 30 s, then 60 s. The reason is logged as one JSON line
(``"message": "ingest: message failed"``, with ``message_id``, ``reason`` and the object URL).

Handler: ``lambdas.ingest.handler.handler`` (event: SQS, or S3).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_plus, urlparse

from stacube.access.errors import AssetNotAllowed
from stacube.access.gate import ReadGate
from stacube.catalog.ingest import item_from_cogs, scene_properties
from stacube.catalog.scenes import acquisition_time, asset_key, find_scene_id
from stacube.catalog.items import check_item
from stacube.catalog.pgstac import Catalog
from stacube.catalog.products import odc_to_collection, validate_collection
from stacube.db.connection import session
from stacube.errors import InvalidInput, NotFound, StacubeError
from stacube.settings import Settings
from stacube.storage.objects import configure_gdal, s3_client

from lambdas.runtime import attempt_of, fail_record, log

settings = Settings()
configure_gdal(settings)

JSON_SUFFIXES = (".json", ".geojson")
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".geojsonl")
PRODUCT_SUFFIXES = (".yaml", ".yml")
COG_SUFFIXES = (".tif", ".tiff")
#: ndjson objects larger than this are streamed (checked, then loaded in chunks).
STREAM_BYTES = 16 << 20
STREAM_CHUNK = 500


class BadObject(InvalidInput):
    """An object that cannot become a collection or items (retrying does not help)."""

    retry_in = 0


class MissingCollection(StacubeError):
    """Items of a collection that is not registered (yet): retried later."""


@dataclass(frozen=True)
class S3Object:
    """An object named in an S3 event record (``size`` in bytes, when the event gives it)."""

    bucket: str
    key: str
    size: int | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class Message:
    """What one SQS record (or one direct S3 record) asks to register."""

    record: dict
    objects: list[S3Object] = field(default_factory=list)
    collections: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)
    cogs: list[tuple[str, S3Object]] = field(default_factory=list)  # (collection, COG)
    streams: list[tuple[str | None, S3Object]] = field(default_factory=list)  # (folder collection, ndjson)
    loaded: int = 0
    error: BaseException | None = None

    @property
    def id(self) -> str:
        return self.record.get("messageId") or self.record.get("responseElements", {}).get(
            "x-amz-request-id", "")


_S3 = None


def _s3():
    global _S3
    if _S3 is None:
        _S3 = s3_client(settings)
    return _S3


def s3_objects(event: dict) -> list[S3Object]:
    """Objects created under the ingest prefix, from an S3 event document.

    Raises:
        BadObject: not an S3 event.
    """
    if event.get("Event") == "s3:TestEvent":
        return []
    records = event.get("Records")
    if not isinstance(records, list):
        raise BadObject(f"not an S3 event notification: {json.dumps(event)[:200]}")
    prefix = settings.ingest_prefix.lstrip("/")
    found = []
    for record in records:
        if record.get("eventSource") != "aws:s3":
            raise BadObject(f"not an S3 event record: {json.dumps(record)[:200]}")
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        key = unquote_plus((s3.get("object") or {}).get("key", ""))
        if not bucket or not key:
            raise BadObject(f"S3 event record without bucket or key: {json.dumps(record)[:200]}")
        if key.startswith(prefix) and not key.endswith("/"):
            size = (s3.get("object") or {}).get("size")
            found.append(S3Object(bucket, key, size if isinstance(size, int) else None))
    return found


def _read(obj: S3Object) -> bytes:
    from botocore.exceptions import ClientError

    try:
        return _s3().get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            raise BadObject(f"{obj.url}: the object no longer exists") from exc
        raise


def _relative(obj: S3Object) -> list[str]:
    """The key's folders below the ingest prefix, and its file name."""
    rel = obj.key[len(settings.ingest_prefix.lstrip("/")):]
    return [p for p in rel.split("/") if p]


def _resolve_hrefs(doc: dict, obj: S3Object) -> dict:
    """Relative asset hrefs of an item resolved against the object's URL.

    Raises:
        BadObject: an asset href is a local path.
    """
    assets = doc.get("assets")
    if not isinstance(assets, dict):
        return doc
    folder = posixpath.dirname(obj.key)
    for key, asset in assets.items():
        href = asset.get("href") if isinstance(asset, dict) else None
        if not isinstance(href, str) or not href:
            continue
        scheme = urlparse(href).scheme
        if scheme and len(scheme) > 1 and scheme != "file":
            continue
        if scheme == "file" or href.startswith("/"):
            raise BadObject(f"{obj.url}: item {doc.get('id')!r}: asset {key!r} is a local path "
                            f"({href}); use a relative or s3:// href")
        resolved = posixpath.normpath(posixpath.join(folder, href))
        if resolved.startswith(".."):
            raise BadObject(f"{obj.url}: item {doc.get('id')!r}: asset {key!r} ({href}) points "
                            "above the bucket")
        asset["href"] = f"s3://{obj.bucket}/{resolved}"
    return doc


def _json_documents(obj: S3Object, data: bytes) -> list[dict]:
    name = obj.key.lower()
    try:
        if name.endswith(NDJSON_SUFFIXES):
            return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadObject(f"{obj.url}: malformed JSON: {exc}") from exc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return list(doc.get("features") or [])
    return [doc]


def cog_item_key(obj: S3Object) -> tuple[str, str]:
    """``(item id, folder)`` of a COG: its folder's name, or its own for ``<collection>/x.tif``."""
    parts = _relative(obj)
    folder = posixpath.dirname(obj.key)
    if len(parts) == 2:
        return posixpath.splitext(parts[1])[0], folder
    return parts[-2], folder


def describe_cogs(objs: list[S3Object], collection: str, template: dict | None) -> dict:
    """An item of the given COGs of one folder (one asset each, described once).

    Raises:
        BadObject: a COG cannot be read, or the scene's acquisition time cannot be told.
    """
    item_id, folder = cog_item_key(objs[0])
    parts = _relative(objs[0])
    stems = [posixpath.splitext(posixpath.basename(o.key))[0] for o in objs]
    scene = find_scene_id(item_id) or find_scene_id(stems[0])
    files = {asset_key(stem, scene.id if scene else None): Path(f"/vsis3/{o.bucket}/{o.key}")
             for stem, o in zip(stems, objs)}
    names = [item_id, *stems, *reversed(parts[1:-2])]
    try:
        when, _ = acquisition_time(f"s3://{objs[0].bucket}/{folder}", names, list(files.values()))
        doc = item_from_cogs(item_id, when, files, collection=collection,
                             asset_fields={k: {} for k in files}, template=template,
                             properties=scene_properties(scene, template))
    except InvalidInput as exc:
        raise BadObject(f"{', '.join(o.url for o in objs)}: {exc.message}") from exc
    for asset in doc["assets"].values():
        if asset["href"].startswith("/vsis3/"):
            asset["href"] = "s3://" + asset["href"][len("/vsis3/"):]
    return doc


def merge_assets(existing: dict | None, new: dict) -> dict:
    """``new`` with the assets of the item already registered (the new ones win), its footprint
    kept: the COGs of one scene share it."""
    if not existing:
        return new
    merged = dict(new)
    merged["assets"] = {**(existing.get("assets") or {}), **new["assets"]}
    for key in ("geometry", "bbox"):
        if existing.get(key):
            merged[key] = existing[key]
    return merged


def add_cogs(catalog: Catalog, collection: str, objs: list[S3Object], collections: dict[str, dict]) -> dict:
    """Describe the COGs of one folder and add them to their item (see the module docstring);
    returns the item written.

    Raises:
        BadObject / InvalidInput / StacubeError: the COGs or the item could not be registered.
    """
    doc = describe_cogs(objs, collection, collections.get(collection))
    with catalog.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"stacube.item:{collection}/{doc['id']}",))
        here = Catalog(settings, conn)
        try:
            existing = here.get_item(collection, doc["id"])
        except NotFound:
            existing = None
        merged = merge_assets(existing, doc)
        try:
            item = check_item(merged, collections=set(collections), source=objs[0].url)
        except InvalidInput as exc:
            raise BadObject(exc.message) from exc
        here.load_items([item], mode="upsert")
    return item


def _stream_lines(obj: S3Object):
    """The non-empty lines of an ndjson object, read as a stream."""
    body = _s3().get_object(Bucket=obj.bucket, Key=obj.key)["Body"]
    for line in body.iter_lines(chunk_size=1 << 20):
        if line.strip():
            yield line


def _stream_items(obj: S3Object, folder_collection: str | None, collections: dict[str, dict], gate: ReadGate):
    """Checked items of a streamed ndjson object, one at a time.

    Raises:
        BadObject / MissingCollection: the first bad line.
    """
    for number, line in enumerate(_stream_lines(obj), start=1):
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise BadObject(f"{obj.url}: line {number}: malformed JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise BadObject(f"{obj.url}: line {number}: expected a STAC Item object")
        yield checked_item(obj, doc, folder_collection, collections, source=f"{obj.url}:{number}", gate=gate)


def checked_item(obj: S3Object, doc: dict, folder_collection: str | None, collections: dict[str, dict],
                 *, source: str, gate: ReadGate) -> dict:
    """An item of ``obj``: its collection (the folder's when it names none), its relative hrefs
    resolved, checked, and every asset href through the read gate.

    Raises:
        MissingCollection: its collection is not registered (yet).
        BadObject: it is not a valid item.
    """
    if folder_collection and not doc.get("collection"):
        doc["collection"] = folder_collection
    wanted = doc.get("collection")
    if isinstance(wanted, str) and wanted and wanted not in collections:
        raise MissingCollection(f"{obj.url}: item {doc.get('id')!r}: collection {wanted!r} is not "
                                "registered (yet)")
    _resolve_hrefs(doc, obj)
    for asset in (doc.get("assets") or {}).values() if isinstance(doc.get("assets"), dict) else ():
        if isinstance(asset, dict) and isinstance(asset.get("href"), str):
            _gated(gate, asset["href"], doc.get("collection"), f"{obj.url}: item {doc.get('id')!r}")
    try:
        return check_item(doc, collections=set(collections), source=source)
    except InvalidInput as exc:
        raise BadObject(exc.message) from exc


def load_stream(catalog: Catalog, obj: S3Object, folder_collection: str | None,
                collections: dict[str, dict], gate: ReadGate) -> int:
    """Check every line of a large ndjson object, then load it in chunks; returns the items.

    Raises:
        BadObject / MissingCollection: a bad line (nothing was loaded).
        InvalidInput / StacubeError: the catalog refused a chunk, or is unavailable.
    """
    for _ in _stream_items(obj, folder_collection, collections, gate):  # first pass: nothing kept
        pass
    loaded, chunk = 0, []
    for item in _stream_items(obj, folder_collection, collections, gate):
        chunk.append(item)
        if len(chunk) >= STREAM_CHUNK:
            loaded += catalog.load_items(_unique(chunk), mode="upsert").items
            chunk = []
    if chunk:
        loaded += catalog.load_items(_unique(chunk), mode="upsert").items
    return loaded


def _collection(obj: S3Object, doc: dict) -> dict:
    try:
        if doc.get("type") == "Collection":
            return validate_collection(doc, source=obj.url)
        return odc_to_collection(doc, source=obj.url)
    except InvalidInput as exc:
        raise BadObject(exc.message) from exc


def _gated(gate: ReadGate, href: str, collection, where: str) -> str:
    try:
        return gate.check(href, collection)
    except AssetNotAllowed as exc:
        raise BadObject(f"{where}: {exc.message}") from exc


def read_message(message: Message, collections: dict[str, dict], gate: ReadGate) -> None:
    """Fill ``message.collections`` and ``message.items`` from its objects.

    Args:
        collections: the catalog's collection documents by id (new collections are added).
        gate: the read gate every href opened or stored goes through.

    Raises:
        BadObject / MissingCollection / StacubeError: the first problem found.
    """
    for obj in message.objects:
        parts = _relative(obj)
        name = obj.key.lower()
        folder_collection = parts[0] if len(parts) >= 2 else None
        if name.endswith(PRODUCT_SUFFIXES):
            import yaml

            try:
                doc = yaml.safe_load(_read(obj))
            except yaml.YAMLError as exc:
                raise BadObject(f"{obj.url}: malformed YAML: {exc}") from exc
            if not isinstance(doc, dict):
                raise BadObject(f"{obj.url}: expected a product definition mapping")
            message.collections.append(_collection(obj, doc))
            continue
        if name.endswith(NDJSON_SUFFIXES) and (obj.size or 0) > STREAM_BYTES:
            message.streams.append((folder_collection, obj))
            continue
        if name.endswith(JSON_SUFFIXES + NDJSON_SUFFIXES):
            docs = _json_documents(obj, _read(obj))
        elif name.endswith(COG_SUFFIXES):
            if folder_collection is None:
                raise BadObject(f"{obj.url}: COGs go under {settings.ingest_prefix}<collection>/")
            if folder_collection not in collections:
                raise MissingCollection(f"{obj.url}: collection {folder_collection!r} is not "
                                        "registered (yet)")
            _gated(gate, obj.url, folder_collection, obj.url)
            message.cogs.append((folder_collection, obj))
            continue
        else:
            log("info", "ingest: ignored (not JSON, YAML or a COG)", object=obj.url)
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("type") == "Collection":
                collection = _collection(obj, doc)
                message.collections.append(collection)
                collections.setdefault(collection["id"], collection)
                continue
            if not isinstance(doc, dict):
                raise BadObject(f"{obj.url}: expected a STAC Item object")
            message.items.append(checked_item(obj, doc, folder_collection, collections, source=obj.url, gate=gate))


def _unique(items: list[dict]) -> list[dict]:
    """Items by (collection, id), the last one winning (pgSTAC upserts a row once per load)."""
    return list({(i["collection"], i["id"]): i for i in items}.values())


def register(messages: list[Message]) -> None:
    """Register the messages' collections, then their items in one transaction.

    Sets ``message.error`` on the messages that could not be registered.
    """
    catalog = Catalog(settings)
    pending = [m for m in messages if m.error is None and m.objects]
    if not pending:
        return
    collections = {c["id"]: c for c in catalog.collections()}
    gate = ReadGate.load(settings)
    for message in pending:
        try:
            read_message(message, collections, gate)
            for collection in message.collections:
                old = collections.get(collection["id"])
                if old is not None and old is not collection and old.get("extent"):
                    collection["extent"] = old["extent"]
                catalog.upsert_collection(collection)
                collections[collection["id"]] = collection
        except Exception as exc:  # noqa: BLE001 - this message fails, the others go on
            message.error = exc
    _register_cogs(catalog, pending, collections)
    for message in pending:
        for folder_collection, obj in message.streams:
            if message.error is not None:
                break
            try:
                message.loaded += load_stream(catalog, obj, folder_collection, collections, gate)
            except InvalidInput as exc:
                message.error = exc if isinstance(exc, BadObject) else BadObject(exc.message)
            except Exception as exc:  # noqa: BLE001
                message.error = exc
    good = [m for m in pending if m.error is None and m.items]
    if not good:
        return
    try:
        catalog.load_items(_unique([i for m in good for i in m.items]), mode="upsert")
    except InvalidInput:
        if len(good) == 1:
            good[0].error = BadObject(f"the catalog rejected the items of "
                                      f"{', '.join(o.url for o in good[0].objects)}")
            return
        for message in good:  # find the culprit: one transaction per message
            try:
                catalog.load_items(_unique(message.items), mode="upsert")
            except InvalidInput as exc:
                message.error = BadObject(exc.message)
            except Exception as exc:  # noqa: BLE001
                message.error = exc
    except Exception as exc:  # noqa: BLE001 - e.g. the database is down: all retry
        for message in good:
            message.error = exc


def _register_cogs(catalog: Catalog, messages: list[Message], collections: dict[str, dict]) -> None:
    """The COGs of the batch, grouped by item: each folder's COGs described once and added to
    its item; a group that fails fails the messages that brought its COGs."""
    groups: dict[tuple[str, str, str, str], list[tuple[Message, S3Object]]] = {}
    for message in messages:
        if message.error is not None:
            continue
        for collection, obj in message.cogs:
            groups.setdefault((collection, obj.bucket, *cog_item_key(obj)), []).append((message, obj))
    for (collection, *_), members in groups.items():
        objs = list({o.key: o for _, o in members}.values())
        try:
            item = add_cogs(catalog, collection, objs, collections)
        except Exception as exc:  # noqa: BLE001 - these messages fail, the others go on
            for message, _ in members:
                message.error = message.error or exc
            continue
        for message in {id(m): m for m, _ in members}.values():
            message.loaded += 1
            log("info", "ingest: COG item", item=item["id"], collection=collection,
                assets=sorted(item["assets"]), added=[o.url for m, o in members if m is message])


def _messages(event: dict) -> tuple[list[Message], bool]:
    """The event's messages, and whether it came through SQS."""
    records = event.get("Records") or []
    via_sqs = any(r.get("eventSource") == "aws:sqs" for r in records)
    if not via_sqs:  # direct S3 notification: one message
        message = Message(record={"messageId": "s3"})
        try:
            message.objects = s3_objects(event)
        except BadObject as exc:
            message.error = exc
        return [message], False
    messages = []
    for record in records:
        message = Message(record=record)
        try:
            body = json.loads(record.get("body") or "")
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            message.error = BadObject(f"message body is not an S3 event: {exc}")
        else:
            try:
                message.objects = s3_objects(body)
            except BadObject as exc:
                message.error = exc
        messages.append(message)
    return messages, True


def handler(event: dict, context=None) -> dict:
    """Register the objects of an SQS batch (or a direct S3 event).

    Returns:
        ``{"batchItemFailures": [...]}`` for SQS events. A direct S3 event whose objects fail
        raises, so Lambda's asynchronous retries apply.
    """
    messages, via_sqs = _messages(event)
    with session(settings):  # one connection for the batch
        register(messages)
    failures = []
    for message in messages:
        urls = [o.url for o in message.objects]
        if message.error is None:
            if urls:
                log("info", "ingest: registered", message_id=message.id, objects=urls,
                    collections=[c["id"] for c in message.collections],
                    items=len(message.items) + message.loaded, attempt=attempt_of(message.record))
            continue
        if not via_sqs:
            raise message.error
        log("error", "ingest: could not register", message_id=message.id, objects=urls,
            reason=str(message.error))
        failures.append(fail_record(message.record, message.error, "ingest"))
    return {"batchItemFailures": failures}
