"""Finding datasets (STAC Items) in files and folders.

``stacube dataset add PATH...`` accepts:

* STAC Item JSON, ItemCollection / FeatureCollection JSON, and newline-delimited JSON
  (``.ndjson``, ``.jsonl``, ``.geojsonl``) with one Item per line;
* a sample-stack folder with a ``manifest.json`` (see ``data/README.md``): one item per manifest
  entry, assets described with rio-stac from the COG headers plus the manifest's band metadata;
* a folder of COGs (``--collection`` required): each folder holding ``.tif`` files is one item
  with an asset per file (key = file stem without the scene ID) unless its files carry different
  scene IDs (one item per ID) or dates (one item per file); see :func:`scene_groups`. The item id
  is the Landsat / Sentinel-2 scene or product ID in the folder name, else the folder name. The
  acquisition time comes from ``--datetime``, else ``--datetime-pattern``, the GeoTIFF tags, scene
  IDs and ISO dates in the names (:func:`stacube.catalog.scenes.acquisition_time`); a scene whose
  time cannot be found is refused (never "now"). ``platform`` and ``instruments`` come from the
  scene ID, else the collection's one platform.

Items get the projection (v2, per asset), raster and eo fields from rio-stac; assets whose key
matches the collection's ``item_assets`` inherit its roles, ``eo:bands`` common names and
``raster:bands`` scale/offset when the file does not say. When the collection has a quality rule
and the item lacks ``eo:cloud_cover``, it is computed from an overview of the quality COG
(:func:`cloud_cover`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson

from stacube.catalog.products import EXTENSIONS
from stacube.catalog.quality import QualityRule, rule_of
from stacube.catalog.scenes import (
    PLATFORM_INSTRUMENTS,
    DatetimePattern,
    SceneId,
    acquisition_time,
    asset_key,
    find_scene_id,
    iso_date_in,
)
from stacube.core.crs import proj_fields
from stacube.errors import InvalidInput

JSON_SUFFIXES = {".json", ".geojson"}
NDJSON_SUFFIXES = {".ndjson", ".jsonl", ".geojsonl"}
COG_SUFFIXES = {".tif", ".tiff"}


@dataclass
class Found:
    """An item document found in a source, with where it came from."""

    doc: dict
    base: Path | None
    source: str


def iter_found(path: str | Path, *, collection: str | None = None,
               datetime_value: str | None = None, collections: dict[str, dict] | None = None,
               datetime_pattern: DatetimePattern | None = None) -> Iterator[Found]:
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
        files = sorted(p for p in path.rglob("*") if p.is_file())
        docs = [p for p in files if p.suffix.lower() in JSON_SUFFIXES | NDJSON_SUFFIXES]
        cogs = [p for p in files if p.suffix.lower() in COG_SUFFIXES]
        if docs:
            for p in docs:
                yield from iter_file(p)
        elif cogs:
            if not collection:
                raise InvalidInput(f"{path}: a folder of COGs needs --collection")
            yield from iter_cog_folder(path, cogs, collection=collection,
                                       datetime_value=datetime_value, datetime_pattern=datetime_pattern,
                                       template=(collections or {}).get(collection))
        else:
            raise InvalidInput(f"{path}: no STAC JSON, ndjson, manifest.json or COG found")
        return
    if path.suffix.lower() in COG_SUFFIXES:
        if not collection:
            raise InvalidInput(f"{path}: a COG needs --collection")
        yield from iter_cog_folder(path.parent, [path], collection=collection,
                                   datetime_value=datetime_value, datetime_pattern=datetime_pattern,
                                   template=(collections or {}).get(collection))
        return
    yield from iter_file(path)


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
def _parse_user_datetime(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"--datetime {value!r} is not an ISO 8601 date or datetime") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass
class SceneFiles:
    """The COGs of one scene: its item id, the ID its names carry, ``{asset key: path}`` and the
    names its time may be read from (most specific first)."""

    item_id: str
    scene: SceneId | None
    files: dict[str, Path]
    names: list[str]


def _keyed(item_id: str, scene: SceneId | None, files: list[Path], where: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in sorted(files):
        key = asset_key(f.stem, scene.id if scene else None)
        if key in out:
            raise InvalidInput(f"{where}: {out[key].name} and {f.name} would both be asset {key!r} of "
                               f"item {item_id!r}")
        out[key] = f
    return out


def scene_groups(root: Path, folder: Path, files: list[Path]) -> list[SceneFiles]:
    """Split the COGs of one folder into scenes.

    A folder is one scene (item id: the scene ID in its name, else the folder name; a lone file
    given directly: its stem) unless its files carry different scene IDs (grouped by ID, asset keys
    without the ID: ``LC08_..._T1_B4.TIF`` -> ``B4``) or different dates (one item per file).
    """
    parents = list(reversed(folder.relative_to(root).parts[:-1])) if folder != root else []
    whole = folder != root or len(files) > 1  # a folder of one scene, not a lone file
    ids = {f: find_scene_id(f.stem) for f in files}
    distinct = {s.id.upper(): s for s in ids.values() if s}
    if len(distinct) > 1:
        groups: dict[str, list[Path]] = {}
        for f in files:
            groups.setdefault(ids[f].id.upper() if ids[f] else f"\0{f.stem}", []).append(f)
        out = []
        for key, members in sorted(groups.items()):
            scene = distinct.get(key)
            item_id = scene.id if scene else members[0].stem
            out.append(SceneFiles(item_id, scene, _keyed(item_id, scene, members, folder),
                                  [m.stem for m in sorted(members)] + [folder.name, *parents]))
        return out
    if len({iso_date_in(f.name) for f in files} - {None}) > 1:
        return [SceneFiles(f.stem, ids[f], {f.stem: f}, [f.stem, folder.name, *parents]) for f in sorted(files)]
    scene = (find_scene_id(folder.name) if whole else None) or next(iter(distinct.values()), None)
    item_id = scene.id if scene else (folder.name if whole else files[0].stem)
    stems = [f.stem for f in sorted(files)]
    names = [folder.name, *stems, *parents] if whole else [*stems, folder.name, *parents]
    return [SceneFiles(item_id, scene, _keyed(item_id, scene, files, folder), list(dict.fromkeys(names)))]


def iter_cog_folder(root: Path, cogs: list[Path], *, collection: str,
                    datetime_value: str | None, template: dict | None,
                    datetime_pattern: DatetimePattern | None = None) -> Iterator[Found]:
    """Items built from COG files (grouping in :func:`scene_groups`; the acquisition time from
    ``--datetime``, else :func:`stacube.catalog.scenes.acquisition_time`).

    Raises:
        InvalidInput: a scene whose time cannot be found (its folder and what was tried).
    """
    by_dir: dict[Path, list[Path]] = {}
    for cog in cogs:
        by_dir.setdefault(cog.parent, []).append(cog)
    fixed = _parse_user_datetime(datetime_value) if datetime_value else None
    for folder, files in sorted(by_dir.items()):
        for group in scene_groups(root, folder, files):
            where = folder / group.item_id if len(group.files) == 1 and folder.name != group.item_id else folder
            when = fixed or acquisition_time(where, group.names, list(group.files.values()),
                                             pattern=datetime_pattern)[0]
            properties = scene_properties(group.scene, template)
            doc = item_from_cogs(group.item_id, when, group.files, collection=collection,
                                 asset_fields={k: {} for k in group.files}, template=template,
                                 properties=properties)
            yield Found(doc, None, str(where))


def scene_properties(scene: SceneId | None, template: dict | None) -> dict:
    """``platform`` and ``instruments`` of an item: from its scene ID, else the collection's
    when it names exactly one platform (``summaries``; instruments of known platforms as their
    scene IDs would give them)."""
    summaries = (template or {}).get("summaries") or {}
    platforms = summaries.get("platform") or []
    platform = (scene.platform if scene else None) or (platforms[0] if len(platforms) == 1 else None)
    instruments = list(scene.instruments) if scene and scene.instruments else (
        list(PLATFORM_INSTRUMENTS.get(platform) or (summaries.get("instruments") if platform else None) or []))
    props: dict = {}
    if platform:
        props["platform"] = platform
    if instruments:
        props["instruments"] = instruments
    return props


def cloud_cover(path: Path, rule: QualityRule, max_pixels: int = 512) -> float | None:
    """``eo:cloud_cover``: the not-clear share of observed pixels (percent, 2 decimals) of a
    quality (mask) COG decoded with ``rule``, read from an overview of at most ``max_pixels``
    per side (nearest); None when no pixel is observed.

    Raises:
        InvalidInput: the file cannot be read.
    """
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling

    try:
        with rasterio.open(path) as src:
            factor = max(1, -(-max(src.width, src.height) // max_pixels))
            shape = (max(1, src.height // factor), max(1, src.width // factor))
            values = src.read(1, out_shape=shape, resampling=Resampling.nearest)
            nodata = src.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidInput(f"{path}: not a readable raster ({exc})") from exc
    observed, clear = rule.decode(values)
    if nodata is not None and not np.isnan(nodata):
        observed &= values != nodata
    n = int(observed.sum())
    if not n:
        return None
    return round(100.0 * int((observed & ~clear).sum()) / n, 2)


def _projection(props: dict) -> dict:
    """Projection fields of an asset from rio-stac's item properties (both ``proj:code`` and
    ``proj:epsg``: see :func:`stacube.core.crs.proj_fields`)."""
    out = {}
    epsg = props.get("proj:epsg") or props.get("proj:code")
    if epsg:
        out.update(proj_fields(int(epsg) if isinstance(epsg, int) else str(epsg)))
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


def item_from_cogs(item_id: str, when: datetime, files: dict[str, Path], *,
                   collection: str, asset_fields: dict[str, dict], template: dict | None,
                   properties: dict | None = None) -> dict:
    """A STAC Item with one asset per COG, described by rio-stac.

    Args:
        item_id: the item id.
        when: acquisition time (aware; see :func:`stacube.catalog.scenes.acquisition_time`).
        files: ``{asset key: path}``.
        collection: collection id.
        asset_fields: ``{asset key: extra fields}`` merged into each asset (roles, eo:bands...).
        template: the collection document; its ``item_assets`` fill in missing asset fields, and
            its quality rule gives ``eo:cloud_cover`` when ``properties`` lack it.
        properties: extra item properties.

    Raises:
        InvalidInput: no acquisition time; a file cannot be opened as a raster.
    """
    if when is None:
        raise InvalidInput(f"item {item_id!r}: no acquisition time")
    import rasterio
    from rio_stac import create_stac_item

    item_assets = (template or {}).get("item_assets") or {}
    assets: dict[str, dict] = {}
    footprint = None
    item_props: dict = dict(properties or {})
    for key, path in files.items():
        try:
            with warnings.catch_warnings():  # rio-stac parses TIFF-format date tags noisily; the time is given
                warnings.filterwarnings("ignore", message="Could not get parse date")
                described = create_stac_item(
                    str(path), input_datetime=when, id=item_id, collection=collection,
                    with_proj=True, with_raster=True, with_eo=True, raster_max_size=256,
                ).to_dict()
        except rasterio.errors.RasterioIOError as exc:
            raise InvalidInput(f"{path}: not a readable raster ({exc})") from exc
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
            **_projection(described["properties"]),
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
    item_props["datetime"] = when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    rule = rule_of(template) if template else None
    if rule is not None and rule.asset in files and "eo:cloud_cover" not in item_props:
        cover = cloud_cover(Path(files[rule.asset]), rule)
        if cover is not None:
            item_props["eo:cloud_cover"] = cover
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
