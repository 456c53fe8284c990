"""Finding datasets (STAC Items) in files and folders.

``stacube dataset add PATH...`` accepts:

* STAC Item JSON, ItemCollection / FeatureCollection JSON, and newline-delimited JSON
  (``.ndjson``, ``.jsonl``, ``.geojsonl``) with one Item per line;
* a sample-stack folder with a ``manifest.json`` (see ``data/README.md``): one item per manifest
  entry, assets described with rio-stac from the COG headers plus the manifest's band metadata;
* a folder of COGs (``--collection`` required): each folder holding ``.tif`` files is one item
  with an asset per file (key = file stem) unless the file names carry different dates, in which
  case each file is an item. The datetime comes from ``--datetime``, the GDAL ``IMAGERY``
  ``ACQUISITIONDATETIME`` / ``TIFFTAG_DATETIME`` tags, or a ``YYYYMMDD`` / ``YYYY-MM-DD`` date in
  the path.

Items get the projection (v2, per asset), raster and eo fields from rio-stac; assets whose key
matches the collection's ``item_assets`` inherit its roles, ``eo:bands`` common names and
``raster:bands`` scale/offset when the file does not say.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson

from stacube.catalog.products import EXTENSIONS
from stacube.errors import InvalidInput

JSON_SUFFIXES = {".json", ".geojson"}
NDJSON_SUFFIXES = {".ndjson", ".jsonl", ".geojsonl"}
COG_SUFFIXES = {".tif", ".tiff"}
DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d\d)-?([01]\d)-?([0-3]\d)(?:T(\d\d)(\d\d)(\d\d))?")


@dataclass
class Found:
    """An item document found in a source, with where it came from."""

    doc: dict
    base: Path | None
    source: str


def iter_found(path: str | Path, *, collection: str | None = None,
               datetime_value: str | None = None, collections: dict[str, dict] | None = None
               ) -> Iterator[Found]:
    """Every item in a file or folder (see the module docstring).

    Raises:
        InvalidInput: unreadable or malformed source (the message names the file and line).
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "manifest.json").exists():
            yield from iter_manifest(path, collections=collections or {})
            return
        files = files_below(path)
        docs = [p for p in files if p.suffix.lower() in JSON_SUFFIXES | NDJSON_SUFFIXES]
        cogs = [p for p in files if p.suffix.lower() in COG_SUFFIXES]
        if docs:
            for p in docs:
                yield from iter_file(p)
        elif cogs:
            if not collection:
                raise InvalidInput(f"{path}: a folder of COGs needs --collection")
            yield from iter_cog_folder(path, cogs, collection=collection,
                                       datetime_value=datetime_value,
                                       template=(collections or {}).get(collection))
        else:
            raise InvalidInput(f"{path}: no STAC JSON, ndjson, manifest.json or COG found")
        return
    if path.suffix.lower() in COG_SUFFIXES:
        if not collection:
            raise InvalidInput(f"{path}: a COG needs --collection")
        yield from iter_cog_folder(path.parent, [path], collection=collection,
                                   datetime_value=datetime_value,
                                   template=(collections or {}).get(collection))
        return
    yield from iter_file(path)


def walk_folders(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, file names)`` of ``folder`` and every folder below it, entering symbolic links
    to folders as folders; each real folder once (a link back up does not loop)."""
    seen = set()
    for top, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        yield Path(top), names


def files_below(folder: Path) -> list[Path]:
    """The files below ``folder``, sorted (see :func:`walk_folders`)."""
    return sorted(top / n for top, names in walk_folders(folder) for n in names if (top / n).is_file())


def iter_file(path: Path) -> Iterator[Found]:
    """Items of one JSON or ndjson file."""
    base = path.parent.resolve()
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        if path.suffix.lower() in NDJSON_SUFFIXES:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise InvalidInput(f"{path} line {lineno}: malformed JSON: {exc}") from exc
                yield Found(doc, base, f"{path.name}:{lineno}")
            return
        try:
            doc = orjson.loads(handle.read())
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"{path}: malformed JSON: {exc}") from exc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        for i, feature in enumerate(doc.get("features") or []):
            yield Found(feature, base, f"{path.name}#{i}")
    elif isinstance(doc, dict) and doc.get("type") == "Collection":
        raise InvalidInput(f"{path}: is a STAC Collection; add it with `stacube product add`")
    else:
        yield Found(doc, base, path.name)


# -- COGs -------------------------------------------------------------------------------------
def _date_in(text: str) -> datetime | None:
    match = DATE_IN_NAME.search(text)
    if not match:
        return None
    y, m, d, hh, mm, ss = match.groups()
    try:
        return datetime(int(y), int(m), int(d), int(hh or 0), int(mm or 0), int(ss or 0),
                        tzinfo=timezone.utc)
    except ValueError:
        return None


def _parse_user_datetime(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"--datetime {value!r} is not an ISO 8601 date or datetime") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def iter_cog_folder(root: Path, cogs: list[Path], *, collection: str,
                    datetime_value: str | None, template: dict | None) -> Iterator[Found]:
    """Items built from COG files (grouping rule in the module docstring)."""
    by_dir: dict[Path, list[Path]] = {}
    for cog in cogs:
        by_dir.setdefault(cog.parent, []).append(cog)
    for folder, files in sorted(by_dir.items()):
        dates = {_date_in(f.name) for f in files}
        if len(dates - {None}) > 1:
            groups = [(f.stem, [f]) for f in files]
        else:
            groups = [(folder.name if folder != root or len(files) > 1 else files[0].stem, files)]
        for item_id, group in groups:
            when = (_parse_user_datetime(datetime_value) if datetime_value
                    else _date_in(item_id) or _date_in(str(folder)))
            assets = {f.stem: {} for f in group}
            files_by_key = {f.stem: f for f in group}
            doc = item_from_cogs(item_id, when, files_by_key, collection=collection,
                                 asset_fields=assets, template=template)
            yield Found(doc, None, str(folder if item_id == folder.name else folder / item_id))


def _proj_v2(props: dict) -> dict:
    out = {}
    epsg = props.get("proj:epsg")
    if epsg:
        out["proj:code"] = f"EPSG:{epsg}"
    elif props.get("proj:wkt2"):
        out["proj:wkt2"] = props["proj:wkt2"]
    for key in ("proj:shape", "proj:bbox"):
        if key in props:
            out[key] = props[key]
    if "proj:transform" in props:
        out["proj:transform"] = list(props["proj:transform"])[:6]
    return out


def _clean_raster_band(band: dict) -> dict:
    band = {k: v for k, v in band.items() if k != "histogram"}
    nodata = band.get("nodata")
    if isinstance(nodata, float) and nodata.is_integer() and not band.get("data_type", "").startswith("float"):
        band["nodata"] = int(nodata)
    if band.get("scale") == 1.0 and band.get("offset") == 0.0:
        band.pop("scale")
        band.pop("offset")
    return band


def item_from_cogs(item_id: str, when: datetime | None, files: dict[str, Path], *,
                   collection: str, asset_fields: dict[str, dict], template: dict | None,
                   properties: dict | None = None) -> dict:
    """A STAC Item with one asset per COG, described by rio-stac.

    Args:
        item_id: the item id.
        when: acquisition time (None: read from the files' GDAL tags).
        files: ``{asset key: path}``.
        collection: collection id.
        asset_fields: ``{asset key: extra fields}`` merged into each asset (roles, eo:bands...).
        template: the collection document; its ``item_assets`` fill in missing asset fields.
        properties: extra item properties.

    Raises:
        InvalidInput: a file cannot be opened as a raster.
    """
    import rasterio
    from rio_stac import create_stac_item

    item_assets = (template or {}).get("item_assets") or {}
    assets: dict[str, dict] = {}
    footprint = None
    item_props: dict = dict(properties or {})
    first_datetime = None
    for key, path in files.items():
        try:
            described = create_stac_item(
                str(path), input_datetime=when, id=item_id, collection=collection,
                with_proj=True, with_raster=True, with_eo=True, raster_max_size=256,
            ).to_dict()
        except rasterio.errors.RasterioIOError as exc:
            reason = str(exc).replace(f"'{path}' ", "").replace(str(path), "it")  # say the path once
            raise InvalidInput(f"{path}: not a readable raster ({reason})") from exc
        first_datetime = first_datetime or described["properties"].get("datetime")
        if footprint is None or described["properties"].get("proj:shape", [0])[0] * \
                described["properties"].get("proj:shape", [0, 0])[1] > footprint[2]:
            shape = described["properties"].get("proj:shape", [0, 0])
            footprint = (described["geometry"], described["bbox"], shape[0] * shape[1])
        source = next(iter(described["assets"].values()))
        asset = {
            "href": str(Path(path).resolve()),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "title": key,
            "roles": ["data"],
            **_proj_v2(described["properties"]),
            "raster:bands": [_clean_raster_band(b) for b in source.get("raster:bands", [])],
        }
        template_asset = item_assets.get(key) or {}
        for field in ("roles", "eo:bands", "classification:classes", "classification:bitfields",
                      "title"):
            if field in template_asset:
                asset[field] = template_asset[field]
        if template_asset.get("raster:bands") and asset["raster:bands"]:
            for field in ("scale", "offset", "unit"):
                value = template_asset["raster:bands"][0].get(field)
                if value is not None and field not in asset["raster:bands"][0]:
                    asset["raster:bands"][0][field] = value
        asset.update(asset_fields.get(key) or {})
        assets[key] = asset
    if footprint is None:
        raise InvalidInput(f"item {item_id!r}: no files")
    geometry, bbox, _ = footprint
    item_props["datetime"] = (when.isoformat().replace("+00:00", "Z") if when else first_datetime)
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [EXTENSIONS[k] for k in ("proj", "raster", "eo")],
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": bbox,
        "properties": item_props,
        "links": [],
        "assets": assets,
    }


# -- sample-stack manifests -------------------------------------------------------------------
ROLE_MAP = {
    "data": ["data"],
    "cloud-mask": ["data-mask", "cloud"],
    "quality-bitfield": ["data-mask", "cloud"],
    "cloud-probability": ["cloud"],
}


def iter_manifest(folder: Path, *, collections: dict[str, dict]) -> Iterator[Found]:
    """Items of a sample-stack folder described by ``manifest.json``."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        entries = manifest["items"]
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"{folder / 'manifest.json'}: not a stack manifest ({exc})") from exc
    platform = manifest.get("platform")
    instrument = manifest.get("instrument")
    for entry in entries:
        try:
            item_id = entry["item_id"]
            collection = entry["collection"]
            when = datetime.fromisoformat(entry["datetime"].replace("Z", "+00:00"))
            raw_assets = entry["assets"]
        except (KeyError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"{folder / 'manifest.json'}: malformed item entry ({exc})") from exc
        files = {key: folder / a["file"] for key, a in raw_assets.items()}
        fields: dict[str, dict] = {}
        properties: dict = {}
        for key, a in raw_assets.items():
            extra: dict = {"roles": ROLE_MAP.get(a.get("role", "data"), ["data"])}
            if a.get("common_name") or a.get("center_wavelength_um") not in (None, ""):
                band: dict = {"name": key}
                if a.get("common_name"):
                    band["common_name"] = a["common_name"]
                if a.get("center_wavelength_um") not in (None, ""):
                    band["center_wavelength"] = float(a["center_wavelength_um"])
                if a.get("fwhm_um") not in (None, ""):
                    band["full_width_half_max"] = float(a["fwhm_um"])
                extra["eo:bands"] = [band]
            if a.get("native_gsd_m"):
                extra["gsd"] = float(a["native_gsd_m"])
            fields[key] = extra
            if a.get("cloud_fraction") not in (None, ""):
                properties["eo:cloud_cover"] = round(float(a["cloud_fraction"]) * 100.0, 2)
            for src, dst in (("wrs_path", "landsat:wrs_path"), ("wrs_row", "landsat:wrs_row"),
                             ("platform", "platform")):
                if a.get(src):
                    properties[dst] = a[src]
        if platform and "platform" not in properties:
            properties["platform"] = platform
        if instrument:
            properties["instruments"] = [instrument]
        doc = item_from_cogs(item_id, when, files, collection=collection, asset_fields=fields,
                             template=collections.get(collection), properties=properties)
        yield Found(doc, None, f"{folder.name}/{item_id}")
