"""Registering products and datasets: validate everything first, then write in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from stacube.catalog.derive import FROM_ITEMS
from stacube.catalog.ingest import iter_found
from stacube.catalog.items import check_item
from stacube.catalog.products import attach_quality, read_product_file
from stacube.catalog.quality import QUALITY_KEY, QualityRule, clear_values_rule, parse_rule, preset
from stacube.catalog.scenes import DatetimePattern
from stacube.catalog.pgstac import Catalog, LoadResult
from stacube.errors import InvalidInput


def add_product(catalog: Catalog, path: str | Path, *, quality_asset: str | None = None,
                quality_preset: str | None = None) -> dict:
    """Read a product file (STAC Collection or ODC product YAML) and upsert it.

    Args:
        quality_asset / quality_preset: declare the quality band with a named rule
            (see :data:`stacube.catalog.quality.PRESETS`), overriding the file's.

    Returns:
        The stored collection document.

    Raises:
        InvalidInput: malformed file or rule; nothing is written.
    """
    collection = read_product_file(path)
    if quality_preset or quality_asset:
        if not (quality_preset and quality_asset):
            raise InvalidInput("--quality-asset and --quality-preset go together")
        attach_quality(collection, preset(quality_preset, quality_asset))
    return upsert_product(catalog, collection)


def upsert_product(catalog: Catalog, collection: dict) -> dict:
    """Write a checked collection document. Links the API writes itself are dropped
    (:func:`documentary_links`); a collection already registered keeps the extent pgSTAC
    computed from its items and what was derived from them where the document declares nothing
    (:func:`keep_derived`). Returns the document written."""
    collection["links"] = documentary_links(collection.get("links"))
    if collection["id"] in catalog.collection_ids():
        old = catalog.get_collection(collection["id"])
        if old.get("extent"):
            collection["extent"] = old["extent"]
        keep_derived(collection, old)
    catalog.upsert_collection(collection)
    return collection


#: link relations the STAC API writes itself: a collection copied from another catalogue keeps
#: them pointing there, and clients (pystac-client's queryables, paging) would follow them away
SERVED_RELS = {"self", "root", "parent", "child", "item", "items", "collection", "next", "prev",
               "previous", "first", "last", "search", "queryables", "aggregate", "aggregations",
               "conformance", "service-desc", "service-doc", "data", "tiles",
               "http://www.opengis.net/def/rel/ogc/1.0/queryables"}


def documentary_links(links) -> list[dict]:
    """A collection's links without those the API writes itself (:data:`SERVED_RELS`): licence,
    citation, documentation and provenance links stay."""
    return [link for link in links or [] if isinstance(link, dict)
            and str(link.get("rel", "")).lower() not in SERVED_RELS]


def keep_derived(collection: dict, old: dict) -> dict:
    """Carry the ``item_assets`` and summaries ``old`` derived from its items into
    ``collection`` (a replacement document) where it declares none of its own."""
    marker = old.get(FROM_ITEMS) or {}
    kept: dict = {}
    assets = collection.setdefault("item_assets", {})
    for key, fields in (marker.get("item_assets") or {}).items():
        derived = {f: v for f, v in ((old.get("item_assets") or {}).get(key) or {}).items()
                   if f in fields and f not in (assets.get(key) or {})}
        assets[key] = {**derived, **(assets.get(key) or {})}
        kept.setdefault("item_assets", {})[key] = sorted(derived)
    if not assets:
        collection.pop("item_assets")
    summaries = collection.setdefault("summaries", {})
    derived = [k for k in marker.get("summaries") or [] if k not in summaries]
    for key in derived:
        if key in (old.get("summaries") or {}):
            summaries[key] = old["summaries"][key]
    if derived:
        kept["summaries"] = derived
    if not summaries:
        collection.pop("summaries")
    if marker.get("renders") and not collection.get("renders") and old.get("renders"):
        collection["renders"] = old["renders"]
        kept["renders"] = marker["renders"]
        collection.setdefault("stac_extensions", [])
        for ext in old.get("stac_extensions") or []:
            if "/render/" in ext and ext not in collection["stac_extensions"]:
                collection["stac_extensions"].append(ext)
    if kept:
        collection[FROM_ITEMS] = kept
    return collection


def collect_items(catalog: Catalog, paths: Iterable[str | Path], *, collection: str | None = None,
                  datetime_value: str | None = None, datetime_pattern: str | None = None,
                  on_item: Callable[[dict], None] | None = None) -> list[dict]:
    """Read and check every item of every path; raise on the first bad one.

    Args:
        datetime_value: acquisition time of every COG item (``--datetime``).
        datetime_pattern: how to read acquisition times from names
            (:class:`stacube.catalog.scenes.DatetimePattern`).

    Raises:
        InvalidInput: ``<source>: item <id>: <reason>``, or a scene whose time cannot be found;
            nothing has been written.
    """
    pattern = DatetimePattern(datetime_pattern) if datetime_pattern else None
    documents = {c["id"]: c for c in catalog.collections()}
    known = set(documents)
    items: list[dict] = []
    seen: dict[tuple[str, str], str] = {}
    for path in paths:
        for found in iter_found(path, collection=collection, datetime_value=datetime_value,
                                datetime_pattern=pattern, collections=documents):
            doc = check_item(found.doc, collections=known, collection=collection,
                             base=found.base, source=found.source)
            key = (doc["collection"], doc["id"])
            if key in seen:
                raise InvalidInput(
                    f"{found.source}: item {doc['id']!r} appears twice in the batch (first in {seen[key]})"
                )
            seen[key] = found.source
            items.append(doc)
            if on_item:
                on_item(doc)
    return items


def add_datasets(catalog: Catalog, paths: Iterable[str | Path], *, collection: str | None = None,
                 datetime_value: str | None = None, datetime_pattern: str | None = None,
                 mode: str = "upsert", on_item: Callable[[dict], None] | None = None) -> LoadResult:
    """Register datasets from files and folders (see :mod:`stacube.catalog.ingest`).

    All items are read and checked before anything is written; the load is one transaction.
    Upserting the same items again changes nothing.

    Raises:
        InvalidInput: a bad item (its id and the reason) or source; the catalog is unchanged.
    """
    items = collect_items(catalog, paths, collection=collection, datetime_value=datetime_value,
                          datetime_pattern=datetime_pattern, on_item=on_item)
    if not items:
        raise InvalidInput("no items found in the given paths")
    return catalog.load_items(items, mode=mode)


def set_quality(catalog: Catalog, collection_id: str, rule: QualityRule | None) -> dict:
    """Declare (or, with None, remove) the quality rule of a registered collection; its items
    stay as they are. The mask asset must be one of the collection's ``item_assets`` (declared
    or derived from its items); the roles and classification fields the rule writes there become
    declared ones (later items do not change them).

    Raises:
        NotFound: no such collection.
        InvalidInput: the asset is not one of the collection's assets.
    """
    doc = catalog.get_collection(collection_id)
    if rule is None:
        doc.pop(QUALITY_KEY, None)
    else:
        if not doc.get("item_assets"):
            raise InvalidInput(f"collection {collection_id!r} has no item_assets yet: register its "
                               "items first (their assets are described then) or declare item_assets")
        before = dict(doc["item_assets"].get(rule.asset) or {})
        attach_quality(doc, rule)
        after = doc["item_assets"][rule.asset]
        derived = (doc.get(FROM_ITEMS) or {}).get("item_assets") or {}
        if rule.asset in derived:
            changed = {k for k in after if before.get(k) != after[k]}
            derived[rule.asset] = [f for f in derived[rule.asset] if f not in changed]
    catalog.upsert_collection(doc)
    return doc


def mask_rule(catalog: Catalog, collection_id: str, asset: str, clear: list[int]) -> QualityRule:
    """A categorical rule from clear values (``--asset A --clear 0,1``), the mask's nodata as
    fill (from its ``raster:bands``).

    Raises:
        NotFound: no such collection.
        InvalidInput: no clear value.
    """
    meta = (catalog.get_collection(collection_id).get("item_assets") or {}).get(asset) or {}
    nodata = ((meta.get("raster:bands") or [{}])[0]).get("nodata")
    return clear_values_rule(asset, clear, int(nodata) if isinstance(nodata, (int, float)) else None)


def quality_rule_from_doc(doc: dict, where: str):
    """Parse a rule document (re-exported for the CLI)."""
    return parse_rule(doc, where=where)
