"""Checking and normalising STAC Item documents before they reach the catalog."""

from __future__ import annotations

import math
import os
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

from stacube.catalog.derive import standard_type_error
from stacube.catalog.products import ID_PATTERN, STAC_VERSION
from stacube.core.times import parse_rfc3339
from stacube.errors import InvalidInput

REMOTE_SCHEMES = {"http", "https", "s3", "gs", "az", "abfs", "abfss"}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")  # RFC 3986 scheme, as urlparse reads it


def _parse_datetime(value, field: str, item_id: str) -> datetime:
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise InvalidInput(f"item {item_id!r}: properties.{field} {exc}") from exc


def _check_position(pos, item_id: str) -> None:
    if not isinstance(pos, (list, tuple)) or len(pos) < 2:
        raise InvalidInput(f"item {item_id!r}: geometry has a malformed position {pos!r}")
    for v in pos:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise InvalidInput(f"item {item_id!r}: geometry has a non-numeric coordinate {v!r}")


def _check_geometry(geom, item_id: str) -> None:
    if geom is None:
        return
    if not isinstance(geom, dict) or "type" not in geom:
        raise InvalidInput(f"item {item_id!r}: geometry is not a GeoJSON geometry")
    kind = geom["type"]
    coords = geom.get("coordinates")
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
             "Polygon": 2, "MultiPolygon": 3}.get(kind)
    if kind == "GeometryCollection":
        for g in geom.get("geometries") or []:
            _check_geometry(g, item_id)
        return
    if depth is None:
        raise InvalidInput(f"item {item_id!r}: unknown geometry type {kind!r}")

    def walk(node, level, top=False):
        if level == 0:
            _check_position(node, item_id)
            return
        # RFC 7946 allows empty members of a Multi* geometry; not an empty geometry overall
        if not isinstance(node, list) or (not node and (top or not kind.startswith("Multi"))):
            raise InvalidInput(f"item {item_id!r}: {kind} geometry has empty or malformed coordinates")
        for child in node:
            walk(child, level - 1)

    walk(coords, depth, top=True)
    if kind.startswith("Multi") and not any(coords):
        raise InvalidInput(f"item {item_id!r}: {kind} geometry is empty")
    if kind in ("Polygon", "MultiPolygon"):
        polygons = [coords] if kind == "Polygon" else coords
        for polygon in polygons:
            for ring in polygon:
                if len(ring) < 4 or list(ring[0][:2]) != list(ring[-1][:2]):
                    raise InvalidInput(f"item {item_id!r}: polygon ring is not closed")


def _absolute_href(href: str, base: Path | None) -> str:
    match = _SCHEME.match(href)  # (urlparse costs more than the rest of an item's checks)
    scheme = match.group(1).lower() if match else ""
    if scheme in REMOTE_SCHEMES or href.startswith("/vsi"):
        return href
    if scheme == "file":
        return str(Path(urlparse(href).path).resolve())
    if len(scheme) > 1:
        return href
    path = Path(href)
    if not path.is_absolute():
        root = Path(os.path.normpath(base or Path.cwd()))
        path = Path(os.path.normpath(root / path))
        if path != root and root not in path.parents:
            raise InvalidInput(f"asset href {href!r} leaves the directory of its item (..)")
        return str(path)
    return str(Path(os.path.normpath(path)))


def check_item(doc, *, collections: set[str], collection: str | None = None,
               base: Path | None = None, source: str = "") -> dict:
    """Validate one STAC Item and normalise it for loading.

    * ``collection`` (when given) is set on the item, or must match it;
    * relative or ``file://`` asset hrefs become absolute local paths (GDAL, odc-stac and titiler
      all read those), resolved against ``base`` (the directory of the file the item came from);
      a relative href that climbs out of ``base`` (``../``) is refused;
    * ``stac_version`` and ``links`` get defaults.

    Raises:
        InvalidInput: ``item <id>: <reason>`` for the first problem found.
    """
    where = f"{source}: " if source else ""
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}expected a STAC Item object, got {type(doc).__name__}")
    item_id = doc.get("id")
    if doc.get("type") != "Feature":
        raise InvalidInput(f"{where}item {item_id!r}: \"type\" must be \"Feature\"")
    if not isinstance(item_id, str) or not item_id:
        raise InvalidInput(f"{where}item without a string \"id\"")
    if not ID_PATTERN.match(item_id):
        raise InvalidInput(f"{where}item {item_id!r}: id may hold letters, digits, '.', '_' and '-' only")
    item_collection = doc.get("collection")
    if collection:
        if item_collection and item_collection != collection:
            raise InvalidInput(
                f"{where}item {item_id!r}: belongs to collection {item_collection!r}, not {collection!r}"
            )
        doc["collection"] = item_collection = collection
    if not item_collection:
        raise InvalidInput(f"{where}item {item_id!r}: no \"collection\" (pass --collection)")
    if not isinstance(item_collection, str):
        raise InvalidInput(f"{where}item {item_id!r}: \"collection\" must be a string")
    if item_collection not in collections:
        raise InvalidInput(
            f"{where}item {item_id!r}: unknown collection {item_collection!r} (add the product first)"
        )
    props = doc.get("properties")
    if not isinstance(props, dict):
        raise InvalidInput(f"{where}item {item_id!r}: \"properties\" must be an object")
    if props.get("datetime") is not None:
        _parse_datetime(props["datetime"], "datetime", item_id)
        ranged = [f for f in ("start_datetime", "end_datetime") if props.get(f) is not None]
        bounds = [_parse_datetime(props[f], f, item_id) for f in ranged]  # the loader reads them
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise InvalidInput(f"{where}item {item_id!r}: start_datetime is after end_datetime")
    else:
        if props.get("start_datetime") is None or props.get("end_datetime") is None:
            raise InvalidInput(
                f"{where}item {item_id!r}: needs properties.datetime or start_datetime and end_datetime"
            )
        start = _parse_datetime(props["start_datetime"], "start_datetime", item_id)
        end = _parse_datetime(props["end_datetime"], "end_datetime", item_id)
        if start > end:
            raise InvalidInput(f"{where}item {item_id!r}: start_datetime is after end_datetime")
    problem = standard_type_error(props)
    if problem:
        raise InvalidInput(f"{where}item {item_id!r}: {problem}")
    if "geometry" not in doc:
        raise InvalidInput(f"{where}item {item_id!r}: no \"geometry\"")
    _check_geometry(doc["geometry"], item_id)
    bbox = doc.get("bbox")
    if doc["geometry"] is not None and bbox is None:
        raise InvalidInput(f"{where}item {item_id!r}: an item with a geometry needs a \"bbox\"")
    if bbox is not None and (
        not isinstance(bbox, list) or len(bbox) not in (4, 6)
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    ):
        raise InvalidInput(f"{where}item {item_id!r}: bbox must be 4 or 6 finite numbers")
    assets = doc.get("assets")
    if not isinstance(assets, dict):
        raise InvalidInput(f"{where}item {item_id!r}: \"assets\" must be an object")
    for key, asset in assets.items():
        if not isinstance(asset, dict) or not isinstance(asset.get("href"), str) or not asset["href"]:
            raise InvalidInput(f"{where}item {item_id!r}: asset {key!r} has no href")
        try:
            asset["href"] = _absolute_href(asset["href"], base)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}item {item_id!r}: asset {key!r}: {exc.message}") from exc
    doc.setdefault("stac_version", STAC_VERSION)
    doc.setdefault("links", [])
    doc.setdefault("stac_extensions", [])
    return doc
