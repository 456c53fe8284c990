"""Describing a product from its files: an Open Data Cube product definition derived from the
COGs of one scene folder (``stacube product create NAME --from-cogs DIR``).

Per COG of the first scene (in path order) under ``DIR`` a measurement: its asset key (the file
stem without the scene ID, as ``dataset add`` names assets), ``dtype``, ``nodata``, ``units``,
``scale_factor`` / ``add_offset`` (when not 1 / 0) read from the file; its STAC common name (as
an alias) from ``--band STEM=NAME``, else from the band designations of the sensor the scene IDs
name (``LE7...`` -> ETM+: ``B3`` red), else from the stem itself when it is a common name. The
storage CRS and resolution are those most bands share (the finest on a tie). The platform is the
one every scene ID under ``DIR`` names (or ``--platform``). The quality band is ``--quality-asset``
with ``--quality-preset`` or ``--clear``, else a band with a known quality name (``BQA``,
``QA_PIXEL``, ``SCL``, ``Fmask``) with its preset.

The result is a plain ODC product definition (plus stacube's ``quality`` mapping): printing it
as YAML and adding it with ``stacube product add`` gives the same collection as registering it
directly (both go through :func:`stacube.catalog.products.odc_to_collection`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from stacube.catalog.bands import COMMON_NAMES
from stacube.catalog.ingest import COG_SUFFIXES, scene_groups
from stacube.catalog.products import ID_PATTERN
from stacube.catalog.quality import clear_values_rule, preset
from stacube.catalog.scenes import PLATFORM_SENSORS, mission_common_name, quality_preset_of
from stacube.core.crs import crs_text
from stacube.errors import InvalidInput

#: Sensors whose band numbers mean the same (TM and ETM+ share bands 1-7).
_COMPATIBLE = ({"tm", "etm+"},)


def _cogs(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if root.suffix.lower() in COG_SUFFIXES else []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in COG_SUFFIXES)


def _sensor(sensors: set[str]) -> str | None:
    if len(sensors) == 1:
        return next(iter(sensors))
    for group in _COMPATIBLE:
        if sensors and sensors <= group:
            return sorted(sensors)[-1]
    return None


def parse_band_options(values: list[str]) -> dict[str, str]:
    """``["B4=red", ...]`` -> ``{"B4": "red"}``.

    Raises:
        InvalidInput: not ``STEM=NAME``, or NAME is not a STAC common name.
    """
    out = {}
    for value in values or []:
        stem, sep, name = value.partition("=")
        stem, name = stem.strip(), name.strip().lower()
        if not sep or not stem or not name:
            raise InvalidInput(f"--band {value!r}: expected STEM=COMMON_NAME, e.g. B4=red")
        if name not in COMMON_NAMES:
            raise InvalidInput(f"--band {value!r}: {name!r} is not a STAC common name; use one of "
                               f"{', '.join(COMMON_NAMES)}")
        out[stem] = name
    return out


def _read(path: Path) -> dict:
    import rasterio

    try:
        with rasterio.open(path) as src:
            if src.count != 1:
                raise InvalidInput(f"{path}: {src.count} bands; a measurement is one single-band COG")
            if src.crs is None:
                raise InvalidInput(f"{path}: no CRS")
            return {"dtype": src.dtypes[0], "nodata": src.nodata, "units": src.units[0] or "1",
                    "scale": src.scales[0], "offset": src.offsets[0], "crs": src.crs.to_wkt(),
                    "res": (abs(src.transform.a), abs(src.transform.e))}
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidInput(f"{path}: not a readable raster ({exc})") from exc


def describe_cogs(name: str, root: str | Path, *, bands: dict[str, str] | None = None,
                  quality_asset: str | None = None, quality_preset: str | None = None,
                  clear: list[int] | None = None, title: str | None = None,
                  platform: str | None = None) -> dict:
    """An ODC product definition of the scenes under ``root`` (see the module docstring).

    Args:
        name: the product (collection) id.
        root: a folder of scene folders, one scene folder, or one COG.
        bands: ``{stem: common name}`` overrides.
        quality_asset, quality_preset / clear: the quality band and its rule.
        title: the product's description (default: what it was made from).
        platform: e.g. ``landsat-7`` (also chooses the band designations).

    Returns:
        A product definition mapping (``name``, ``description``, ``metadata_type``, ``metadata``,
        ``storage``, ``measurements``, ``quality``).

    Raises:
        InvalidInput: no COG, unreadable files, a band or quality option naming no file, bad
            option combinations.
    """
    root = Path(root)
    if not ID_PATTERN.match(name):
        raise InvalidInput(f"product name {name!r} must be letters, digits, '.', '_' or '-'")
    if not root.exists():
        raise InvalidInput(f"{root}: no such file or directory")
    cogs = _cogs(root)
    if not cogs:
        raise InvalidInput(f"{root}: no COG (.tif, .tiff) found")
    if clear is not None and quality_preset:
        raise InvalidInput("--quality-preset and --clear are alternatives: give one")
    if (clear is not None or quality_preset) and not quality_asset:
        raise InvalidInput("--quality-preset and --clear need --quality-asset")
    if quality_asset and clear is None and not quality_preset:
        raise InvalidInput("--quality-asset needs --quality-preset or --clear")
    base = root if root.is_dir() else root.parent
    by_dir: dict[Path, list[Path]] = {}
    for cog in cogs:
        by_dir.setdefault(cog.parent, []).append(cog)
    groups = [g for folder, files in sorted(by_dir.items()) for g in scene_groups(base, folder, files)]
    first = groups[0]
    platforms = {g.scene.platform for g in groups if g.scene and g.scene.platform}
    platform = (platform or "").strip().lower() or (next(iter(platforms)) if len(platforms) == 1 else None)
    sensor = PLATFORM_SENSORS.get(platform or "") or _sensor({g.scene.sensor for g in groups
                                                             if g.scene and g.scene.sensor})
    bands = dict(bands or {})
    for stem in [*bands, *([quality_asset] if quality_asset else [])]:
        if stem not in first.files:
            raise InvalidInput(f"{stem!r} is not a band of {first.item_id} ({', '.join(first.files)})")
    described = {key: _read(path) for key, path in first.files.items()}
    resolutions = Counter((d["res"], crs_text(d["crs"])) for d in described.values())
    (res, crs), _ = min(resolutions.items(), key=lambda kv: (-kv[1], kv[0][0]))
    measurements = []
    for key, d in described.items():
        m: dict = {"name": key, "dtype": d["dtype"]}
        if d["nodata"] is not None:
            m["nodata"] = _plain(d["nodata"])
        m["units"] = d["units"]
        common = bands.get(key) or (None if key == quality_asset else mission_common_name(sensor, key))
        if common and common != key:
            m["aliases"] = [common]
        if (d["scale"], d["offset"]) != (1.0, 0.0):
            m["scale_factor"], m["add_offset"] = d["scale"], d["offset"]
        measurements.append(m)
    doc: dict = {
        "name": name,
        "description": title or f"{platform or 'scenes'} ({', '.join(described)}) described from the COGs "
                                f"of {first.item_id}",
        "metadata_type": "eo3",
        "metadata": {},
        "storage": {"crs": crs, "resolution": {"y": -res[1], "x": res[0]}},
        "measurements": measurements,
    }
    if platform:
        doc["metadata"]["platform"] = {"code": platform}
    rule = _quality(first.files, described, quality_asset, quality_preset, clear)
    if rule:
        doc["quality"] = rule
    return doc


def _plain(value):
    """Numbers as YAML writes them back (whole floats as ints; NaN as the string ``nan``)."""
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value.is_integer():
            return int(value)
    return value


def _quality(files: dict, described: dict, asset: str | None, preset_name: str | None,
             clear: list[int] | None) -> dict | None:
    if asset is None:
        known = [(k, quality_preset_of(k)) for k in files if quality_preset_of(k)]
        if len(known) != 1:
            return None
        asset, preset_name = known[0]
    if preset_name:
        preset(preset_name, asset)  # raises on an unknown name
        return {"asset": asset, "preset": preset_name}
    nodata = described[asset]["nodata"]
    rule = clear_values_rule(asset, list(clear), int(nodata) if nodata is not None and nodata == nodata else None)
    return rule.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {"kind": rule.kind}
