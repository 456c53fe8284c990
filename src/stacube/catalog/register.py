"""Registering products and datasets: validate everything first, then write in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from stacube.catalog.ingest import iter_found
from stacube.catalog.items import check_item
from stacube.catalog.products import attach_quality, read_product_file
from stacube.catalog.quality import parse_rule, preset
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
    """Write a checked collection document, keeping the extent of one already registered
    (pgSTAC computed it from the items loaded). Returns the document written."""
    if collection["id"] in catalog.collection_ids():
        old = catalog.get_collection(collection["id"])
        if old.get("extent"):
            collection["extent"] = old["extent"]
    catalog.upsert_collection(collection)
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


def quality_rule_from_doc(doc: dict, where: str):
    """Parse a rule document (re-exported for the CLI)."""
    return parse_rule(doc, where=where)
