"""What a collection's items say about it: ``item_assets``, ``summaries`` and typed queryables.

Many real collections declare no ``item_assets`` (an extension until STAC 1.1) and few
summaries. stacube derives them from the items as they are registered, so bands, roles,
``raster:bands`` / ``eo:bands`` and the quality asset are known for every collection:

* ``item_assets``: per asset key, the fields every item agrees on (STAC item-assets: "fields
  common to all items"), without what is item-specific (``href``, ``proj:shape``,
  ``proj:transform``, ``proj:bbox``, ``file:*``, statistics...). Band lists (``raster:bands``,
  ``eo:bands``, ``bands``) are compared band by band, field by field.
* ``summaries``: numeric properties as ``{"minimum", "maximum"}``; categorical ones (platform,
  constellation, instruments, ``proj:code``...) as the list of values while there are at most
  :data:`MAX_VALUES`.
* ``renders``: a default rendering when the collection declares none
  (:mod:`stacube.catalog.renders`);
* queryables: each property with its JSON type (``number``, ``string`` with ``format:
  date-time``, ``array``, ``boolean``): the numeric and date-time ones registered with pgSTAC,
  which then compares and sorts them as numbers and instants; all of them listed by the API's
  queryables (``properties`` of the record below).

What was derived is recorded in the collection under ``stacube:from_items``
(``{"item_assets": {asset key: [fields]}, "summaries": [keys], "renders": [names], "properties":
{name: JSON Schema}}``), so a later batch refines it
(a field items disagree on is dropped; a new asset key is added) and never overrides what the
product definition declared. All functions are pure: they take and return documents.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import repeat
from typing import Any

from stacube.catalog.renders import RENDERS_EXTENSION, default_renders

FROM_ITEMS = "stacube:from_items"
#: categorical summaries hold at most this many values; a property with more is not summarised
MAX_VALUES = 10
#: asset fields that describe one item's file, never the collection's asset
ITEM_SPECIFIC = {"href", "alternate", "proj:shape", "proj:transform", "proj:bbox", "proj:geometry",
                 "proj:centroid", "created", "updated", "checksum:multihash", "statistics",
                 "raster:statistics", "raster:histogram", "histogram", "storage:refs"}
ITEM_SPECIFIC_PREFIXES = ("file:",)
BAND_LISTS = ("raster:bands", "eo:bands", "bands")
#: properties never summarised nor typed (item identity, times: pgSTAC indexes them itself)
NOT_SUMMARISED = {"datetime", "start_datetime", "end_datetime", "created", "updated"}
#: properties pgSTAC reads as columns of its items table (queryables of their own)
COLUMNS = {"datetime", "start_datetime", "end_datetime"}
CATEGORICAL = {
    "platform", "constellation", "instruments", "mission", "proj:code", "proj:epsg", "gsd",
    "sat:orbit_state", "sat:platform_international_designator", "processing:level",
    "landsat:collection_category", "landsat:collection_number", "landsat:wrs_type",
    "sar:instrument_mode", "sar:frequency_band", "sar:polarizations", "sar:product_type",
    "odc:product_type", "odc:metadata_type", "s2:processing_baseline", "mgrs:utm_zone",
}
#: properties whose type the STAC specification and its extensions fix (common metadata, eo,
#: view, sat, projection): one queryable for every collection each (pgSTAC reads them through
#: their wrapper everywhere), and items must hold that type (checked at registration)
STANDARD_QUERYABLES = {
    **{name: {"type": "number"} for name in (
        "eo:cloud_cover", "eo:snow_cover", "gsd", "proj:epsg", "view:off_nadir",
        "view:incidence_angle", "view:azimuth", "view:sun_azimuth", "view:sun_elevation",
        "sat:relative_orbit", "sat:absolute_orbit")},
    **{name: {"type": "string", "format": "date-time"} for name in (
        "created", "updated", "published", "unpublished", "expires", "sat:anx_datetime")},
}
_DATETIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$", re.I)
_ID_LIKE = re.compile(r"(^|[:_])(id|ids|uri|url|name|title|description|granule_id|datatake_id)$", re.I)


# -- item_assets ---------------------------------------------------------------------------------
def _describable(key: str) -> bool:
    return key not in ITEM_SPECIFIC and not key.startswith(ITEM_SPECIFIC_PREFIXES)


def _band_list(bands: Any) -> list[dict] | None:
    if not isinstance(bands, list) or not all(isinstance(b, dict) for b in bands):
        return None
    return [{k: v for k, v in b.items() if _describable(k)} for b in bands]


def asset_description(asset: dict) -> dict:
    """The collection-level part of one item's asset (item-specific fields removed)."""
    out = {}
    for key, value in asset.items():
        if not _describable(key):
            continue
        if key in BAND_LISTS:
            value = _band_list(value)
            if value is None:
                continue
        out[key] = copy.deepcopy(value)
    return out


def _agree_bands(known: list[dict], seen: Any) -> list[dict] | None:
    if not isinstance(seen, list) or len(seen) != len(known):
        return None
    out = []
    for a, b in zip(known, seen):
        if not isinstance(b, dict):
            return None
        out.append({k: v for k, v in a.items() if k in b and b[k] == v})
    return out


_MISSING = object()


def agree(known: dict, asset: dict) -> dict:
    """``known`` without the fields ``asset`` disagrees on or lacks (item-assets: common fields);
    ``known`` itself when the asset agrees with all of it."""
    out = None
    for i, (key, value) in enumerate(known.items()):
        seen = asset.get(key, _MISSING)
        if seen is not _MISSING and seen == value:
            if out is not None:
                out[key] = value
            continue
        if out is None:
            out = dict(list(known.items())[:i])
        if seen is not _MISSING and key in BAND_LISTS:
            bands = _agree_bands(value, seen)
            if bands is not None and any(bands):
                out[key] = bands
    return known if out is None else out


def derive_item_assets(items: Iterable[dict], item_assets: dict | None = None,
                       derived: dict[str, list[str]] | None = None) -> tuple[dict, dict[str, list[str]]]:
    """``item_assets`` refined by ``items``.

    Args:
        items: STAC Items of one collection.
        item_assets: the collection's ``item_assets`` (declared and derived fields).
        derived: ``{asset key: fields derived before}``; every other field is declared and kept.

    Returns:
        ``(item_assets, derived)``. An asset key new to ``derived`` gets the fields its items
        agree on (declared fields win); for a known key, derived fields items disagree on go.
    """
    out = copy.deepcopy(item_assets) if item_assets else {}
    marker = {k: list(v) for k, v in (derived or {}).items()}
    candidates: dict[str, dict] = {}
    for item in items:
        for key, asset in (item.get("assets") or {}).items():
            if not isinstance(asset, dict):
                continue
            if key not in candidates:
                current = out.get(key) or {}
                if key in marker:
                    candidates[key] = {f: current[f] for f in marker[key] if f in current}
                    if not candidates[key]:
                        continue
                else:
                    candidates[key] = {f: v for f, v in asset_description(asset).items()
                                       if f not in current}
                    continue
            known = candidates[key]
            if known and tuple(map(asset.get, known, repeat(_MISSING, len(known)))) != tuple(known.values()):
                candidates[key] = agree(known, asset)  # (the test above: every field equal, at C speed)
    for key, fields in candidates.items():
        declared = {f: v for f, v in (out.get(key) or {}).items() if f not in marker.get(key, [])}
        out[key] = {**fields, **declared}
        marker[key] = sorted(fields)
    return out, marker


# -- summaries -----------------------------------------------------------------------------------
_NUMBERS = (int, float)


def _number(value) -> bool:
    return type(value) in _NUMBERS or (isinstance(value, _NUMBERS) and not isinstance(value, bool))


@lru_cache(maxsize=4096)
def _summarised_name(name: str) -> bool | None:
    """True: categorical; None: when numeric; False: never."""
    if name in NOT_SUMMARISED or _ID_LIKE.search(name):
        return False
    return True if name in CATEGORICAL else None


def derive_summaries(items: Iterable[dict], known: dict | None = None,
                     keys: Iterable[str] = ()) -> tuple[dict, list[str]]:
    """Summaries of the items' properties, merged into ``known`` (which holds ``keys`` derived
    before: a key in ``keys`` but not in ``known`` had too many values and stays out).

    Returns:
        ``(summaries, derived keys)``: only derived keys are in the summaries returned.
    """
    derived = set(keys)
    out = {k: copy.deepcopy(v) for k, v in (known or {}).items() if k in derived}
    dropped = derived - set(out)
    for item in items:
        for name, value in (item.get("properties") or {}).items():
            if value is None or name in dropped:
                continue
            kind = _summarised_name(name)
            if kind is False:
                continue
            current = out.get(name)
            if kind is None:  # numeric: a range
                if not _number(value) or (current is not None and type(current) is not dict):
                    continue
                if current is None:
                    out[name] = {"minimum": value, "maximum": value}
                elif value < current["minimum"]:
                    current["minimum"] = value
                elif value > current["maximum"]:
                    current["maximum"] = value
            else:  # categorical: the values
                values = value if type(value) is list else (value,)
                if current is None:
                    current = out[name] = []
                for v in values:
                    if v not in current:
                        if not isinstance(v, (str, int, float)) or len(current) >= MAX_VALUES:
                            out.pop(name)
                            dropped.add(name)
                            break
                        current.append(v)
            derived.add(name)
    for value in out.values():
        if isinstance(value, list):
            value.sort(key=lambda v: (str(type(v)), v))
    return out, sorted(derived)


# -- queryables ----------------------------------------------------------------------------------
_TYPES = {float: "number", int: "number", bool: "boolean", list: "array"}
_SCHEMAS = {"number": {"type": "number"}, "boolean": {"type": "boolean"}, "array": {"type": "array"},
            "string": {"type": "string"}, "date-time": {"type": "string", "format": "date-time"}}


def _tag(value) -> str | None:
    tag = _TYPES.get(type(value))
    if tag is not None:
        return tag
    if isinstance(value, str):
        if len(value) >= 19 and value[4] == "-" and _DATETIME.match(value):
            return "date-time"
        return "string"
    return None


def json_type(value) -> dict | None:
    """A JSON Schema fragment for a property value (None for null and objects)."""
    tag = _tag(value)
    return dict(_SCHEMAS[tag]) if tag else None


def widen(a: dict | None, b: dict | None) -> dict:
    """The narrowest definition both values fit (a plain string when they differ)."""
    if a is None:
        return b or {"type": "string"}
    if b is None or a == b:
        return a
    return {"type": "string"}


def property_types(items: Iterable[dict], known: dict[str, dict] | None = None) -> dict[str, dict]:
    """``{property: JSON Schema}`` of the items' properties, widened with ``known``."""
    out = dict(known or {})
    seen: dict[str, str] = {}
    for item in items:
        for name, value in (item.get("properties") or {}).items():
            tag = _tag(value)
            if tag is None:
                continue
            before = seen.setdefault(name, tag)
            if before != tag:
                seen[name] = "string"
    for name, tag in seen.items():
        if name in COLUMNS:
            continue
        kind = dict(_SCHEMAS[tag])
        out[name] = widen(out.get(name), kind) if name in out else kind
    return out


def summary_types(summaries: dict) -> dict[str, dict]:
    """``{property: JSON Schema}`` from a collection's summaries (the product definition)."""
    out = {}
    for name, summary in (summaries or {}).items():
        if name in COLUMNS or not isinstance(name, str) or name.startswith("stacube:"):
            continue
        if isinstance(summary, dict) and ("minimum" in summary or "maximum" in summary):
            out[name] = {"type": "number"}
        elif isinstance(summary, list) and summary:
            kinds = [json_type(v) for v in summary]
            if all(k == kinds[0] for k in kinds) and kinds[0] is not None:
                out[name] = {"type": "array"} if name == "instruments" else kinds[0]
    return out


# -- a collection --------------------------------------------------------------------------------
def refresh_collection(collection: dict, items: list[dict]) -> dict | None:
    """The collection with ``item_assets`` and ``summaries`` refined by ``items`` (see the module
    docstring), or None when nothing changed. What the collection declares itself stays as it is.
    """
    doc = copy.deepcopy(collection)
    marker = dict(doc.get(FROM_ITEMS) or {})
    if items:
        previous = marker.get("item_assets") if isinstance(marker.get("item_assets"), dict) else {}
        item_assets, derived = derive_item_assets(items, doc.get("item_assets"), previous)
        if derived:
            doc["item_assets"] = item_assets
            marker["item_assets"] = derived
            ext = "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"
            if str(doc.get("stac_version", "")).startswith("1.0") and ext not in doc.get("stac_extensions", []):
                doc.setdefault("stac_extensions", []).append(ext)
    summaries = dict(doc.get("summaries") or {})
    previous_keys = set(marker.get("summaries") or [])
    declared = {k for k in summaries if k not in previous_keys}
    mine, keys = derive_summaries(items, {k: v for k, v in summaries.items() if k in previous_keys},
                                  previous_keys)
    keys = [k for k in keys if k not in declared]
    for k in previous_keys - set(mine):
        summaries.pop(k, None)
    summaries.update({k: v for k, v in mine.items() if k not in declared})
    if keys:
        marker["summaries"] = keys
        doc["summaries"] = summaries
    if items:  # every property with its JSON type: the queryables the API lists
        marker["properties"] = property_types(items, marker.get("properties"))
    if items and (not doc.get("renders") or not isinstance(doc["renders"], dict)):
        renders = default_renders(doc, items)
        if renders:
            doc["renders"] = renders
            marker["renders"] = sorted(renders)
            if RENDERS_EXTENSION not in doc.get("stac_extensions", []):
                doc.setdefault("stac_extensions", []).append(RENDERS_EXTENSION)
    if marker:
        doc[FROM_ITEMS] = marker
    return None if doc == collection else doc


def standard_type_error(props: dict) -> str | None:
    """Why a property of :data:`STANDARD_QUERYABLES` does not hold its type, or None."""
    for name, definition in STANDARD_QUERYABLES.items():
        value = props.get(name)
        if value is None:
            continue
        tag = _tag(value)
        if definition.get("format") == "date-time":
            if tag != "date-time":
                return f"properties.{name} must be an RFC 3339 date-time"
        elif tag != "number":
            return f"properties.{name} must be a number"
    return None
