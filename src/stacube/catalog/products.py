"""Products: STAC Collections, and Open Data Cube product definitions converted to them.

An ODC product definition (``name``, ``description``, ``metadata_type``, ``metadata.platform``,
``metadata.instrument``, ``metadata.product_type``, ``storage.crs/resolution``, ``measurements``
with ``name``, ``dtype``, ``nodata``, ``units``, ``aliases``, ``flags_definition``) becomes a
STAC Collection whose ``item_assets`` carry, per measurement:

* ``raster:bands``: ``data_type``, ``nodata``, ``unit`` (and ``scale``/``offset`` when given);
* ``eo:bands``: the measurement name and, when the name or one of its aliases is a STAC common
  name (``red``, ``nir``, ``swir16``...), that ``common_name``;
* ``classification:classes`` / ``classification:bitfields`` translated from ``flags_definition``.

ODC storage settings go to ``summaries["proj:code"]`` and ``stacube:storage`` (the default
output CRS and resolution of composites). A quality rule can be given with a top-level
``quality`` mapping (``{asset: BQA, preset: landsat-c1-bqa}`` or a full rule, see
:mod:`stacube.catalog.quality`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stacube.catalog.bands import COMMON_NAMES
from stacube.catalog.quality import QUALITY_KEY, QualityRule, parse_rule
from stacube.errors import InvalidInput

STAC_VERSION = "1.1.0"
EXTENSIONS = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "item_assets": "https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "web-map-links": "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json",
}
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DTYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64", "bool"}


class OdcMeasurement(BaseModel):
    """One ``measurements`` entry of an ODC product definition."""

    model_config = ConfigDict(extra="allow")

    name: str
    dtype: str
    nodata: float | int | str | None = None
    units: str = "1"
    aliases: list[str] = Field(default_factory=list)
    flags_definition: dict[str, Any] | None = None
    scale_factor: float | None = None
    add_offset: float | None = None
    spectral_definition: dict[str, Any] | None = None

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"unknown dtype {value!r}")
        return value


class OdcProduct(BaseModel):
    """An Open Data Cube product definition (the parts stacube uses)."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str = ""
    metadata_type: str = "eo3"
    metadata: dict[str, Any] = Field(default_factory=dict)
    storage: dict[str, Any] | None = None
    load: dict[str, Any] | None = None
    measurements: list[OdcMeasurement] = Field(min_length=1)
    quality: dict[str, Any] | None = None
    license: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError(f"product name {value!r} must be letters, digits, '.', '_' or '-'")
        return value


def _nodata(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        low = value.lower()
        if low in ("nan", ".nan"):
            return "nan"
        if low in ("inf", "-inf"):
            return low
        try:
            value = float(value)
        except ValueError as exc:
            raise InvalidInput(f"nodata {value!r} is not a number") from exc
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer():
            return int(value)
    return value


def _flags_to_classification(flags: dict[str, Any]) -> dict:
    """ODC ``flags_definition`` -> classification extension fields."""
    classes: list[dict] = []
    bitfields: list[dict] = []
    for flag_name, flag in flags.items():
        bits = flag.get("bits")
        values = flag.get("values") or {}
        if bits is None:
            continue
        bit_list = bits if isinstance(bits, list) else [bits]
        whole = bit_list == list(range(len(bit_list))) and len(bit_list) >= 8
        entries = []
        for raw, label in values.items():
            try:
                number = int(raw)
            except (TypeError, ValueError):
                continue
            label_text = label if isinstance(label, str) else str(label).lower()
            entries.append({"value": number, "name": re.sub(r"\W+", "_", label_text).strip("_")
                            or str(number), "description": flag.get("description", flag_name)})
        if whole:
            classes.extend(entries)
        else:
            bitfields.append({
                "offset": min(bit_list), "length": len(bit_list), "name": flag_name,
                "description": flag.get("description", flag_name), "classes": entries,
            })
    out: dict[str, Any] = {}
    if classes:
        out["classification:classes"] = classes
    if bitfields:
        out["classification:bitfields"] = bitfields
    return out


def _validation_message(exc: ValidationError, where: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{where}: {loc + ': ' if loc else ''}{err['msg']}"


def odc_to_collection(doc: dict, *, source: str = "product") -> dict:
    """Convert an ODC product definition to a STAC Collection document.

    Raises:
        InvalidInput: the definition is malformed (the message names the field).
    """
    try:
        product = OdcProduct.model_validate(doc)
    except ValidationError as exc:
        raise InvalidInput(_validation_message(exc, source)) from exc

    metadata = product.metadata
    platform = (metadata.get("platform") or {}).get("code")
    instrument = (metadata.get("instrument") or {}).get("name")
    product_type = metadata.get("product_type")

    item_assets: dict[str, dict] = {}
    for m in product.measurements:
        common = next(
            (n for n in [m.name, *m.aliases] if n in COMMON_NAMES), None
        )
        band: dict[str, Any] = {"data_type": m.dtype, "unit": m.units}
        nodata = _nodata(m.nodata)
        if nodata is not None:
            band["nodata"] = nodata
        if m.scale_factor is not None:
            band["scale"] = m.scale_factor
        if m.add_offset is not None:
            band["offset"] = m.add_offset
        eo_band: dict[str, Any] = {"name": m.name}
        if common:
            eo_band["common_name"] = common
        if m.spectral_definition and m.spectral_definition.get("wavelength"):
            wl = m.spectral_definition["wavelength"]
            if isinstance(wl, list) and wl:
                eo_band["center_wavelength"] = round(sum(wl) / len(wl) / 1000.0, 4)
        asset: dict[str, Any] = {
            "title": m.name,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "raster:bands": [band],
            "eo:bands": [eo_band],
        }
        if m.aliases:
            asset["stacube:aliases"] = list(m.aliases)
        if m.flags_definition:
            asset["roles"] = ["data-mask"]
            asset.update(_flags_to_classification(m.flags_definition))
        item_assets[m.name] = asset

    summaries: dict[str, Any] = {}
    if platform:
        summaries["platform"] = [str(platform).lower()]
    if instrument:
        summaries["instruments"] = [str(instrument).lower()]
    if product_type:
        summaries["odc:product_type"] = [product_type]
    summaries["odc:metadata_type"] = [product.metadata_type]

    collection: dict[str, Any] = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXTENSIONS[k] for k in ("item_assets", "eo", "raster", "classification")],
        "id": product.name,
        "title": product.description or product.name,
        "description": product.description or product.name,
        "license": product.license or "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "summaries": summaries,
        "item_assets": item_assets,
        "links": [],
    }
    storage = _storage(product.storage or (product.load or None))
    if storage:
        collection["stacube:storage"] = storage
        summaries["proj:code"] = [storage["crs"]]
    if product.quality:
        rule = parse_rule(product.quality, where=f"{source}: quality")
        attach_quality(collection, rule)
    return collection


def _storage(storage: dict | None) -> dict | None:
    if not storage or "crs" not in storage:
        return None
    crs = str(storage["crs"])
    out: dict[str, Any] = {"crs": crs}
    res = storage.get("resolution")
    if isinstance(res, dict) and res:
        values = list(res.values())
        # ODC orders resolution (y, x) / (latitude, longitude) by key; keep |x|, |y|.
        xs = [abs(float(v)) for k, v in res.items() if k in ("x", "longitude")]
        ys = [abs(float(v)) for k, v in res.items() if k in ("y", "latitude")]
        x = xs[0] if xs else abs(float(values[-1]))
        y = ys[0] if ys else abs(float(values[0]))
        out["resolution"] = [x, y]
    elif isinstance(res, (int, float)):
        out["resolution"] = [abs(float(res)), abs(float(res))]
    return out


def attach_quality(collection: dict, rule: QualityRule) -> dict:
    """Store a quality rule in a collection (and the classification fields of its mask asset).

    Raises:
        InvalidInput: the rule's asset is not among the collection's ``item_assets``.
    """
    assets = collection.setdefault("item_assets", {})
    if assets and rule.asset not in assets:
        raise InvalidInput(
            f"collection {collection.get('id')!r}: quality asset {rule.asset!r} is not one of its "
            f"assets ({', '.join(assets)})"
        )
    collection[QUALITY_KEY] = rule.to_stac()
    asset = assets.setdefault(rule.asset, {"title": rule.asset, "roles": ["data-mask"]})
    roles = [r for r in asset.get("roles", []) if r != "data"]
    asset["roles"] = sorted(set(roles) | {"data-mask", "cloud"})
    for key, value in rule.classification_fields().items():
        asset.setdefault(key, value)
    fill = rule.fill_values()
    for cls in asset.get("classification:classes") or []:
        if cls.get("value") in fill:
            cls["nodata"] = True
    ext = EXTENSIONS["classification"]
    if ext not in collection.setdefault("stac_extensions", []):
        collection["stac_extensions"].append(ext)
    return collection


def validate_collection(doc: Any, *, source: str = "collection") -> dict:
    """Check a STAC Collection document and normalise what stacube relies on.

    Raises:
        InvalidInput: not a collection, bad id, missing extent/description, bad quality rule.
    """
    import pystac

    if not isinstance(doc, dict) or doc.get("type") != "Collection":
        raise InvalidInput(f"{source}: not a STAC Collection (\"type\" must be \"Collection\")")
    cid = doc.get("id")
    if not isinstance(cid, str) or not ID_PATTERN.match(cid):
        raise InvalidInput(f"{source}: collection id {cid!r} must be letters, digits, '.', '_' or '-'")
    try:
        pystac.Collection.from_dict(json.loads(json.dumps(doc)), preserve_dict=True)
    except Exception as exc:  # pystac raises several exception types
        raise InvalidInput(f"{source}: invalid STAC Collection {cid!r}: {exc}") from exc
    doc.setdefault("links", [])
    doc.setdefault("stac_version", STAC_VERSION)
    if doc.get(QUALITY_KEY):
        attach_quality(doc, parse_rule(doc[QUALITY_KEY], where=f"{source}: {QUALITY_KEY}"))
    return doc


def read_product_file(path: str | Path) -> dict:
    """Read a product file: STAC Collection JSON, or ODC product definition YAML/JSON.

    Raises:
        InvalidInput: unreadable, unparsable, or neither kind of document.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{path}{where}: malformed YAML/JSON: {problem}") from exc
    if len(docs) != 1:
        raise InvalidInput(f"{path}: expected one document, found {len(docs)}")
    doc = docs[0]
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path}: expected a mapping at the top level")
    if doc.get("type") == "Collection":
        return validate_collection(doc, source=str(path))
    if "measurements" in doc or "metadata_type" in doc:
        return odc_to_collection(doc, source=str(path))
    raise InvalidInput(
        f"{path}: neither a STAC Collection (type: Collection) nor an ODC product definition "
        "(name, metadata_type, measurements)"
    )
