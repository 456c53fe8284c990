"""Open Data Cube ingestion configurations, read as cube parameters and written from cubes.

An ODC ingestion configuration (``datacube ingest -c ingest.yaml``; see the ``ingester``
samples of datacube-core's documentation) names a source product, an output product, a storage
grid (CRS, resolution, tile size, origin, chunking) and the measurements to copy. It maps onto a
cube as follows (anything else is refused with the field named):

=================================  ==========================================================
ODC field                          cube
=================================  ==========================================================
``source_type``                    the source collection (``--collection``)
``output_type``                    the cube name (a ``NAME`` argument overrides it)
``description``                    the description of the cube's collection
``location``                       the root of the cube's stores (``--output``)
``file_path_template``             accepted, not used: a cube is one Zarr store per level,
                                   ``<location>/<output_type>/<level>.zarr``
``global_attributes``              global attributes of the Zarr stores
``ingestion_bounds``               the domain (``--bbox`` in the storage CRS), expanded to
                                   whole tiles as ODC does
``storage.driver``                 ``zarr`` or ``NetCDF CF``: the cube is Zarr with CF
                                   georeferencing either way
``storage.crs`` + ``resolution``   grid ``epsg:<code>/<R>``: square pixels, rows going down
``storage.origin``                 the grid anchor (default 0, 0): grid ``epsg:<code>/<R>@X,Y``
``storage.tile_size``              fill tiles of ``tile_size / R`` px (``--tile-size``)
``storage.chunking``               ``--chunk`` (x = y) and ``--time-chunk``
``storage.dimension_order``        ``[time, y, x]`` only
``measurements[].name``            a band of the cube (a name the source collection resolves)
``measurements[].src_varname``     must be the same asset of the source as ``name``
``measurements[].dtype/nodata``    ``float32`` / ``nan`` (physical values), or an integer dtype
                                   (``int16``...) with a whole ``nodata``: the source's DN,
                                   CF ``scale_factor``/``add_offset``/``_FillValue``
``measurements[].resampling_method``  per-band resampling (``--resampling``)
``measurements[].zlib/attrs``      accepted, not used (Blosc-LZ4 and stacube's CF attributes)
``stacube``                        stacube's own keys (``datetime``, ``indices``, ``method``,
                                   ``period``, ``max_cloud_cover``, ``levels``,
                                   ``zarr_format``, ``additional_source_types``), which ODC
                                   does not have; written by :func:`ingestion_config`
=================================  ==========================================================

Geographic CRSs use ``longitude``/``latitude`` keys instead of ``x``/``y``, as in ODC.
"""

from __future__ import annotations

import math
from typing import Any

from stacube.catalog.bands import resolve_band_assets
from stacube.core.grids import crs_grid_name
from stacube.cubes.definition import CubeDefinition
from stacube.cubes.spec import BAND_DTYPES, NAME_PATTERN, RESAMPLING, CubeSpec, check_band_dtypes
from stacube.errors import InvalidInput, NotFound

TOP_KEYS = ("source_type", "output_type", "description", "location", "file_path_template", "global_attributes",
            "ingestion_bounds", "storage", "measurements", "stacube")
STORAGE_KEYS = ("driver", "crs", "resolution", "tile_size", "origin", "chunking", "dimension_order")
MEASUREMENT_KEYS = ("name", "src_varname", "dtype", "nodata", "resampling_method", "zlib", "attrs")
STACUBE_KEYS = ("datetime", "additional_source_types", "indices", "method", "period", "max_cloud_cover",
                "levels", "zarr_format")
DRIVERS = ("zarr", "netcdf cf")
#: CLI options an ingestion configuration may be combined with (they override its values).
OVERRIDES = ("name", "datetime", "bbox", "bbox_crs", "indices", "method", "period", "max_cloud_cover", "levels",
             "zarr_format")


def _fail(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}")


def _mapping(doc: Any, field: str) -> dict:
    if not isinstance(doc, dict):
        raise _fail(field, "must be a mapping")
    return doc


def _unknown(doc: dict, allowed: tuple[str, ...], prefix: str) -> None:
    for key in doc:
        if key not in allowed:
            raise _fail(f"{prefix}{key}", "a cube has no equivalent of this field; remove it")


def _number(value: Any, field: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _fail(field, f"{value!r} is not a number") from None
    if not math.isfinite(out):
        raise _fail(field, f"{value!r} is not a finite number")
    return out


def _xy(section: Any, field: str, geographic: bool, *, time: bool = False) -> tuple[float, float]:
    """``(x, y)`` of a storage section (``longitude``/``latitude`` for a geographic CRS; with
    ``time``, a ``time`` key may be there too)."""
    keys = ("longitude", "latitude") if geographic else ("x", "y")
    doc = _mapping(section, field)
    for key in doc:
        if key not in keys and not (time and key == "time"):
            raise _fail(f"{field}.{key}", f"use {' and '.join(keys)} for this CRS")
    missing = [k for k in keys if k not in doc]
    if missing:
        raise _fail(field, f"{' and '.join(missing)} missing")
    return _number(doc[keys[0]], f"{field}.{keys[0]}"), _number(doc[keys[1]], f"{field}.{keys[1]}")


def _epsg(crs_text: Any) -> tuple[int, bool]:
    """``(EPSG code, geographic)`` of ``storage.crs``."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    if not isinstance(crs_text, (str, int)):
        raise _fail("storage.crs", "missing or not a CRS (EPSG:<code> or WKT)")
    try:
        crs = CRS.from_user_input(crs_text)
    except CRSError as exc:
        raise _fail("storage.crs", f"{crs_text!r} is not a CRS: {str(exc).splitlines()[0]}") from None
    code = crs.to_epsg()
    if code is None:
        raise _fail("storage.crs", f"{str(crs_text)[:60]!r} has no EPSG code; cube grids are named by one")
    return code, crs.is_geographic


def _storage(doc: Any) -> dict:
    """Grid name, tile size and chunks from ``storage`` (see the module docstring)."""
    storage = _mapping(doc, "storage")
    _unknown(storage, STORAGE_KEYS, "storage.")
    driver = str(storage.get("driver", "zarr"))
    if driver.strip().lower() not in DRIVERS:
        raise _fail("storage.driver", f"{driver!r}: a cube is stored as Zarr (use zarr or NetCDF CF)")
    code, geographic = _epsg(storage.get("crs"))
    x_name, y_name = ("longitude", "latitude") if geographic else ("x", "y")
    if "resolution" not in storage:
        raise _fail("storage.resolution", "missing")
    rx, ry = _xy(storage["resolution"], "storage.resolution", geographic)
    if rx <= 0 or ry >= 0:
        raise _fail("storage.resolution", f"{x_name} must be positive and {y_name} negative (rows go down)")
    if not math.isclose(rx, -ry, rel_tol=1e-9):
        raise _fail("storage.resolution", f"{x_name} {rx:g} and {y_name} {ry:g} differ; cube pixels are square")
    if "chunking" not in storage:
        raise _fail("storage.chunking", "missing")
    chunking = _mapping(storage["chunking"], "storage.chunking")
    cx, cy = _xy(chunking, "storage.chunking", geographic, time=True)
    if cx != cy or not cx.is_integer():
        raise _fail("storage.chunking", f"{x_name} {cx:g} and {y_name} {cy:g}: cube chunks are square, whole pixels")
    if not 16 <= cx <= 4096:
        raise _fail("storage.chunking", f"{x_name} {cx:g}: use 16 to 4096 pixels")
    time_chunk = chunking.get("time", 1)
    if not isinstance(time_chunk, int) or not 1 <= time_chunk <= 4096:
        raise _fail("storage.chunking.time", f"{time_chunk!r}: use 1 to 4096 time steps")
    if "tile_size" not in storage:
        raise _fail("storage.tile_size", "missing")
    tx, ty = _xy(storage["tile_size"], "storage.tile_size", geographic)
    if not math.isclose(abs(tx), abs(ty), rel_tol=1e-9):
        raise _fail("storage.tile_size", f"{x_name} {tx:g} and {y_name} {ty:g} differ; cube tiles are square")
    pixels = abs(tx) / rx
    if abs(pixels - round(pixels)) > 1e-6 or round(pixels) < 1:
        raise _fail("storage.tile_size", f"{abs(tx):g} is not a whole number of {rx:g}-unit pixels")
    tile = round(pixels)
    if tile % int(cx) or tile > 8192:
        raise _fail("storage.tile_size", f"{tile} px: use a multiple of storage.chunking ({int(cx)} px) "
                                         "of at most 8192 px")
    anchor = (0.0, 0.0)
    if storage.get("origin") is not None:
        anchor = _xy(storage["origin"], "storage.origin", geographic)
    order = storage.get("dimension_order", ["time", y_name, x_name])
    if list(order) != ["time", y_name, x_name]:
        raise _fail("storage.dimension_order", f"{order}: a cube's arrays are [time, {y_name}, {x_name}]")
    return {"grid": crs_grid_name(code, rx, anchor), "crs": f"EPSG:{code}", "tile_size": tile, "chunk": int(cx),
            "time_chunk": time_chunk, "geographic": geographic}


def _measurements(doc: Any) -> tuple[list[str], dict[str, str], dict[str, str], dict[str, str], dict[str, float]]:
    """``(bands, {band: resampling}, {band: src_varname}, {band: dtype}, {band: nodata})`` from
    ``measurements`` (float32 bands are left out of the last two)."""
    if not isinstance(doc, list) or not doc:
        raise _fail("measurements", "a non-empty list of measurements is required")
    bands, resampling, sources, dtypes, nodatas = [], {}, {}, {}, {}
    for n, m in enumerate(doc):
        field = f"measurements[{n}]"
        m = _mapping(m, field)
        _unknown(m, MEASUREMENT_KEYS, f"{field}.")
        name = m.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"{field}.name", "missing")
        if name in bands:
            raise _fail(f"{field}.name", f"{name!r} is listed twice")
        dtype = str(m.get("dtype", "float32")).strip().lower()
        if dtype not in BAND_DTYPES:
            raise _fail(f"{field}.dtype", f"{dtype!r}; use one of {', '.join(BAND_DTYPES)}")
        nodata = m.get("nodata", math.nan if dtype == "float32" else None)
        if nodata is None:
            raise _fail(f"{field}.nodata", f"missing: a {dtype} measurement needs a nodata value")
        try:
            nodata = float(nodata)
        except (TypeError, ValueError):
            raise _fail(f"{field}.nodata", f"{nodata!r} is not a number") from None
        try:
            check_band_dtypes({name: dtype}, {name: nodata}, [])
        except ValueError as exc:
            raise _fail(f"{field}.nodata", str(exc).split(": ", 1)[-1]) from None
        if dtype != "float32":
            dtypes[name], nodatas[name] = dtype, nodata
        method = str(m.get("resampling_method", "nearest")).strip().lower()
        if method not in RESAMPLING:
            raise _fail(f"{field}.resampling_method", f"{method!r}; use one of {', '.join(RESAMPLING)}")
        bands.append(name)
        if method != "nearest":
            resampling[name] = method
        sources[name] = str(m.get("src_varname", name))
    return bands, resampling, sources, dtypes, nodatas



def check_sources(catalog, collections: list[str], src_varnames: dict[str, str]) -> None:
    """Check that every measurement's ``src_varname`` is the asset its ``name`` resolves to in
    each source collection (a cube variable is named after its source band).

    Raises:
        InvalidInput: an unknown collection, or a name / src_varname that do not match.
    """
    for n, collection_id in enumerate(collections):
        field = "source_type" if n == 0 else f"stacube.additional_source_types[{n - 1}]"
        try:
            collection = catalog.get_collection(collection_id)
        except NotFound:
            raise _fail(field, f"no collection {collection_id!r} (see stacube product list)") from None
        for i, (name, src) in enumerate(src_varnames.items()):
            try:
                asset = resolve_band_assets(collection, [name])[name]
            except InvalidInput as exc:
                raise _fail(f"measurements[{i}].name", str(exc)) from None
            try:
                source_asset = resolve_band_assets(collection, [src])[src]
            except InvalidInput as exc:
                raise _fail(f"measurements[{i}].src_varname", str(exc)) from None
            if source_asset != asset:
                raise _fail(f"measurements[{i}].src_varname",
                            f"{src!r} is asset {source_asset} of {collection_id} but name {name!r} is asset "
                            f"{asset}; a cube variable is named after its source band")


def spec_from_ingestion_config(doc: Any, *, catalog=None, **overrides) -> CubeSpec:
    """Cube parameters from an ODC ingestion configuration (see the module docstring).

    Args:
        doc: the parsed YAML document.
        catalog: when given, the source collections and measurement names are checked against it
            (:func:`check_sources`).
        overrides: values of :data:`OVERRIDES` (None: not given) that take precedence over the
            configuration: ``name``, ``datetime``, ``bbox`` (+ ``bbox_crs``), ``indices``...

    Raises:
        InvalidInput: one line naming the first field that cannot be mapped.
    """
    doc = _mapping(doc, "configuration")
    _unknown(doc, TOP_KEYS, "")
    extra = _mapping(doc.get("stacube") or {}, "stacube")
    _unknown(extra, STACUBE_KEYS, "stacube.")
    unknown = [k for k in overrides if k not in OVERRIDES]
    if unknown:
        raise InvalidInput(f"--{unknown[0].replace('_', '-')}: the ingestion configuration sets this")
    source = doc.get("source_type")
    if not isinstance(source, str) or not source:
        raise _fail("source_type", "missing (the collection to read)")
    also = extra.get("additional_source_types") or []
    if not isinstance(also, list):
        raise _fail("stacube.additional_source_types", "must be a list of collection ids")
    name = overrides.get("name") or doc.get("output_type")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise _fail("output_type", f"{name!r}: a cube name is lowercase letters, digits, '.', '_' and '-' (max 63)")
    for key in ("description", "location", "file_path_template"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise _fail(key, "must be a string")
    attributes = _mapping(doc.get("global_attributes") or {}, "global_attributes")
    for key, value in attributes.items():
        if not isinstance(value, (str, int, float, bool)):
            raise _fail(f"global_attributes.{key}", "must be a string or a number")
    if "storage" not in doc:
        raise _fail("storage", "missing")
    storage = _storage(doc["storage"])
    bands, resampling, src_varnames, dtypes, nodata = _measurements(doc.get("measurements"))
    if overrides.get("bbox") is not None:
        bbox, bbox_crs = overrides["bbox"], overrides.get("bbox_crs") or "EPSG:4326"
    elif doc.get("ingestion_bounds") is not None:
        bounds = _mapping(doc["ingestion_bounds"], "ingestion_bounds")
        _unknown(bounds, ("left", "bottom", "right", "top"), "ingestion_bounds.")
        missing = [k for k in ("left", "bottom", "right", "top") if k not in bounds]
        if missing:
            raise _fail("ingestion_bounds", f"{', '.join(missing)} missing")
        bbox = tuple(_number(bounds[k], f"ingestion_bounds.{k}") for k in ("left", "bottom", "right", "top"))
        bbox_crs = storage["crs"]
    else:
        raise _fail("ingestion_bounds", "missing: pass --bbox for the area of the cube")
    datetime = overrides.get("datetime") or extra.get("datetime")
    if not datetime:
        raise InvalidInput("--datetime: required (an ingestion configuration has no time range)")

    def pick(key):
        return overrides[key] if overrides.get(key) is not None else extra.get(key)

    collections = [source, *[str(c) for c in also]]
    if catalog is not None:
        check_sources(catalog, collections, src_varnames)
    return CubeSpec.build(
        name=name, collections=collections, grid=storage["grid"], datetime=datetime, bbox=bbox,
        bbox_crs=bbox_crs, bands=bands, indices=pick("indices") or [], method=pick("method"),
        period=pick("period"), max_cloud_cover=pick("max_cloud_cover"), tile_size=storage["tile_size"],
        chunk=storage["chunk"], time_chunk=storage["time_chunk"], levels=pick("levels"),
        output=doc.get("location"), zarr_format=pick("zarr_format"), resampling=resampling,
        dtypes=dtypes, nodata=nodata,
        description=doc.get("description"), global_attributes=attributes,
    )


def _plain(value: float) -> int | float:
    """An int when the float is whole (readable YAML), else the float."""
    return int(value) if float(value).is_integer() and abs(value) < 1e15 else float(value)


def ingestion_config(definition: CubeDefinition) -> dict:
    """The ODC ingestion configuration of a cube: :func:`spec_from_ingestion_config` of it
    defines the same cube (grid, domain, chunks, bands, resampling, time range, options).

    Raises:
        InvalidInput: the cube's CRS has no EPSG code.
    """
    from pyproj import CRS  # lazy: start-up

    spec, grid = definition.spec, definition.grid
    crs = CRS.from_user_input(grid.crs)
    code = crs.to_epsg()
    if code is None:
        raise InvalidInput(f"cube {definition.name}: its CRS has no EPSG code, which an ingestion configuration needs")
    x_name, y_name = ("longitude", "latitude") if crs.is_geographic else ("x", "y")
    res = grid.resolution
    left, bottom, right, top = definition.geobox.extent.boundingbox
    storage: dict[str, Any] = {
        "driver": "zarr",
        "crs": f"EPSG:{code}",
        "tile_size": {x_name: _plain(definition.tile * res), y_name: _plain(definition.tile * res)},
        "resolution": {x_name: _plain(res), y_name: _plain(-res)},
    }
    if any(grid.anchor):
        storage["origin"] = {x_name: _plain(grid.anchor[0]), y_name: _plain(grid.anchor[1])}
    storage["chunking"] = {x_name: definition.chunks[2], y_name: definition.chunks[1],
                           "time": int(spec.get("time_chunk") or definition.chunks[0])}
    storage["dimension_order"] = ["time", y_name, x_name]
    assets = definition.sources[0]["assets"]
    resampling = spec.get("resampling") or {}
    encodings = definition.encodings
    measurements = [{"name": b, "dtype": encodings[b]["dtype"] if b in encodings else "float32",
                     "nodata": _plain(encodings[b]["nodata"]) if b in encodings else math.nan,
                     "resampling_method": resampling.get(b, "nearest"), "src_varname": assets[b]}
                    for b in definition.bands]
    collections = spec["collections"]
    extra: dict[str, Any] = {"datetime": spec["datetime"]}
    if len(collections) > 1:
        extra["additional_source_types"] = collections[1:]
    for key in ("indices", "method", "period", "max_cloud_cover", "levels"):
        if spec.get(key) not in (None, [], ""):
            extra[key] = spec[key]
    if int(spec.get("zarr_format") or 2) != 2:
        extra["zarr_format"] = int(spec["zarr_format"])
    doc: dict[str, Any] = {
        "source_type": collections[0],
        "output_type": definition.name,
        "description": spec.get("description") or f"stacube cube {definition.name} of {', '.join(collections)}",
        "location": definition.uri.rstrip("/").rsplit("/", 1)[0],
        "file_path_template": f"{definition.name}/0.zarr",
    }
    if spec.get("global_attributes"):
        doc["global_attributes"] = dict(spec["global_attributes"])
    doc["ingestion_bounds"] = {"left": _plain(left), "bottom": _plain(bottom), "right": _plain(right),
                               "top": _plain(top)}
    doc["storage"] = storage
    doc["measurements"] = measurements
    doc["stacube"] = extra
    return doc


def ingestion_yaml(definition: CubeDefinition) -> str:
    """:func:`ingestion_config` as YAML text (the keys in ODC's order).

    Raises:
        InvalidInput: the cube's CRS has no EPSG code.
    """
    import yaml  # lazy: start-up

    return yaml.safe_dump(ingestion_config(definition), sort_keys=False, default_flow_style=False, width=100)


def parse_ingestion_yaml(text: str, where: str = "configuration") -> dict:
    """The mapping of an ingestion configuration's YAML text.

    Raises:
        InvalidInput: not YAML, or not a mapping (``where`` names the input in the message).
    """
    import yaml  # lazy: start-up

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{where}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}: not an Open Data Cube ingestion configuration (a mapping)")
    return doc
