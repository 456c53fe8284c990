"""Writing job outputs: a Zarr cube (time, y, x per variable) and one COG per variable and step.

The Zarr store (format 2, or 3 with ``zarr_format=3``; consolidated metadata) carries CF
attributes (:mod:`stacube.core.cf`) and CF georeferencing: a ``spatial_ref``
grid-mapping variable with ``crs_wkt`` and ``GeoTransform`` (as written by odc-geo / rioxarray),
``x``/``y`` pixel-centre coordinates and a ``time`` coordinate (the start of each period), so
``xarray.open_zarr`` + ``rioxarray`` or ``odc.geo`` recover the GeoBox. Chunks are
``(1, 512, 512)``: one period, one tile-aligned block, so tiles write disjoint chunks in
parallel and a map read touches few chunks.

COGs are written with rio-cogeo (``cog_translate``, DEFLATE, 512 px blocks, internal overviews;
``average`` overviews for reflectance and indices, ``nearest`` for provenance and counts) from a
tiled GeoTIFF filled tile by tile (uncompressed up to 512 MiB), so memory stays bounded by one tile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stacube.algo.tile import variable_dtype, variable_fill

CHUNK = 512
#: Uncompressed size above which the intermediate GeoTIFF of a COG is compressed (below it,
#: compressing it costs more time than the disk it saves).
TMP_COMPRESS_ABOVE = 512 << 20


def chunk_edge(tile_edge: int) -> int:
    """Zarr chunk edge: 512 when tiles are multiples of it, else the tile edge."""
    return CHUNK if tile_edge % CHUNK == 0 else tile_edge


def create_cube(store, geobox, variables: list[str], times: list, tile_edge: int,
                attrs: dict | None = None, variable_attrs: dict[str, dict] | None = None,
                zarr_format: int = 2, dtypes: dict[str, tuple[str, Any]] | None = None) -> None:
    """Create an empty Zarr cube with its coordinates and metadata (no data chunks).

    Written with zarr directly, as ``xarray.Dataset.to_zarr`` lays it out: every array names its
    dimensions (``_ARRAY_DIMENSIONS`` in format 2, ``dimension_names`` in 3); ``spatial_ref`` holds the EPSG code and
    the CF grid mapping (pyproj's ``CRS.to_cf()``, ``crs_wkt``, ``spatial_ref`` and
    ``GeoTransform``, as odc-geo and rioxarray write them); ``x``/``y`` are pixel centres;
    ``time`` is int64 seconds since 1970-01-01. No dask or xarray is needed to create it.
    The arrays are created at once through zarr's asynchronous API (one round of writes, not one
    per array and coordinate: on S3 a dozen requests in flight instead of one after another).

    Args:
        store: a local path or a zarr store (see :meth:`stacube.storage.Staging.zarr_store`).
        attrs: global attributes.
        variable_attrs: ``{variable: CF attributes}`` (:mod:`stacube.core.cf`).
        zarr_format: 2 or 3 (the other functions read either).
        dtypes: ``{variable: (dtype, nodata)}`` of variables that are not a composite's
            (:func:`stacube.algo.tile.variable_dtype` / ``variable_fill`` otherwise).
    """
    from zarr.core.sync import sync  # zarr's own bridge to its event loop (as its synchronous API)

    edge = chunk_edge(tile_edge)
    ny, nx = geobox.shape.y, geobox.shape.x
    chunks = (1, min(edge, ny), min(edge, nx))
    crs, affine = geobox.crs, geobox.affine
    wkt = crs.to_wkt()
    units = crs.units[0] if crs.units else "metre"
    cf = {"spatial_ref": wkt, **crs.proj.to_cf(),
          "GeoTransform": " ".join(repr(float(v)) for v in (affine.c, affine.a, affine.b, affine.f, affine.d, affine.e))}
    # (name, data or (shape, dtype), chunks, fill, dimensions, attributes)
    arrays: list[tuple] = [("spatial_ref", np.array(crs.epsg or 0, dtype="int32"), (), None, (), cf)]
    for dim, count, start, step in (("x", nx, affine.c, affine.a), ("y", ny, affine.f, affine.e)):
        arrays.append((dim, start + (np.arange(count) + 0.5) * step, (count,), np.nan, (dim,),
                       {"units": units, "resolution": float(step), "crs": wkt}))
    seconds = np.array([np.datetime64(t.replace(tzinfo=None), "s").astype(np.int64) for t in times], dtype=np.int64)
    arrays.append(("time", seconds, (max(1, len(times)),), None, ("time",),
                   {"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian"}))
    for name in variables:
        dtype, fill = (dtypes or {}).get(name) or (variable_dtype(name), variable_fill(name))
        var_attrs = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref",
                     **((variable_attrs or {}).get(name) or {})}
        arrays.append((name, ((len(times), ny, nx), dtype), chunks, fill, ("time", "y", "x"), var_attrs))
    sync(_create(store, arrays, attrs or {}, zarr_format))
    for key in [k for k in _ARRAYS if k[0] == (store if isinstance(store, str) else repr(store))]:
        del _ARRAYS[key]  # a cube made again: its arrays are opened afresh


async def _create(store, arrays: list[tuple], attrs: dict, zarr_format: int) -> None:
    """The group, then every array with its values (concurrently), then the consolidated metadata."""
    import asyncio

    from zarr.api import asynchronous as zarr_async

    group = await zarr_async.open_group(store=store, mode="w", zarr_format=zarr_format, attributes=attrs)
    # every write ends before a failure is raised: a write still in flight after it (zarr's loop
    # runs on) could land after the caller has discarded the staging area
    done = await asyncio.gather(*(_array(group, *array, zarr_format) for array in arrays), return_exceptions=True)
    failed = [d for d in done if isinstance(d, BaseException)]
    if failed:
        raise failed[0]
    await zarr_async.consolidate_metadata(store, zarr_format=zarr_format)


async def _array(group, name: str, values, chunks: tuple, fill, dims: tuple[str, ...], attrs: dict,
                 zarr_format: int) -> None:
    """One array of the cube, with its values (``values``: an array, or ``(shape, dtype)`` of one
    left empty), its dimension names where each Zarr format keeps them (format 2: the
    ``_ARRAY_DIMENSIONS`` attribute xarray writes; format 3: ``dimension_names``) and its nodata
    as the array's ``fill_value`` (and CF ``_FillValue`` in format 3)."""
    extra = {"dimension_names": dims} if zarr_format == 3 else {}
    if zarr_format == 2:
        attrs = {**attrs, "_ARRAY_DIMENSIONS": list(dims)}
    elif fill is not None and not (isinstance(fill, float) and np.isnan(fill)):
        attrs = {**attrs, "_FillValue": fill}
    shape, dtype = (values.shape, values.dtype) if isinstance(values, np.ndarray) else values
    # the attributes go with the array's metadata: one write per array, not two
    array = await group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                                     attributes=attrs, **extra)
    if isinstance(values, np.ndarray):
        await array.setitem(..., values)


def zarr_encoding(chunks: tuple, fill, zarr_format: int, **extra) -> dict:
    """xarray's Zarr encoding of a variable: chunks and its nodata (``_FillValue``; in Zarr 3
    also the array's ``fill_value``, which unwritten chunks read as)."""
    out = {"chunks": chunks, "_FillValue": fill, **extra}
    if zarr_format == 3 and fill is not None:
        out["fill_value"] = fill
    return out


_ARRAYS: dict[tuple[str, str], object] = {}


def _open_array(store, name: str, steps: int):
    """The cube's array ``name``, opened once per process and store (a tile then only writes its
    chunks: no metadata read per tile); opened again when its time steps differ (a re-run)."""
    import zarr

    key = (store if isinstance(store, str) else repr(store), name)
    array = _ARRAYS.get(key)
    if array is None or array.shape[0] != steps:
        if len(_ARRAYS) >= 64:
            _ARRAYS.clear()
        array = zarr.open_group(store=store, mode="r+")[name]
        _ARRAYS[key] = array
    return array


def write_region(store, tile_geobox, parent_geobox, arrays: dict[str, np.ndarray]) -> None:
    """Write one tile's ``(time, y, x)`` arrays into the cube (idempotent: a retried tile
    overwrites its own chunks)."""
    y0, x0 = _offset(tile_geobox, parent_geobox)
    for name, value in arrays.items():
        t, ny, nx = value.shape
        _open_array(store, name, t)[:, y0:y0 + ny, x0:x0 + nx] = value


def _offset(tile_geobox, parent_geobox) -> tuple[int, int]:
    inv = ~parent_geobox.affine
    x, y = inv @ (tile_geobox.affine.c, tile_geobox.affine.f)
    return int(round(y)), int(round(x))


def finish_cube(store) -> None:
    """Consolidate the cube's metadata once every region is written."""
    import zarr

    zarr.consolidate_metadata(store)


def write_cog(cube, name: str, step: int, geobox, tiles, dst: Path) -> None:
    """One COG of variable ``name`` at time step ``step``, assembled tile by tile (in the
    array's dtype, its fill value as nodata)."""
    import rasterio
    import zarr
    from rasterio.windows import Window
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    array = zarr.open_group(store=cube, mode="r")[name]
    dtype = array.dtype.name
    fill = array.fill_value
    fill = None if fill is None else (float(fill) if dtype.startswith("float") else int(fill))
    ny, nx = geobox.shape.y, geobox.shape.x
    tmp = dst.with_suffix(".tmp.tif")
    large = nx * ny * np.dtype(dtype).itemsize > TMP_COMPRESS_ABOVE
    profile = {
        "driver": "GTiff", "width": nx, "height": ny, "count": 1, "dtype": dtype,
        "crs": geobox.crs.to_wkt(), "transform": geobox.affine, "nodata": fill,
        "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate" if large else "none",
        "BIGTIFF": "IF_SAFER",
    }
    with rasterio.open(tmp, "w", **profile) as out:
        for y0, x0, h, w in strips(tiles, geobox, np.dtype(dtype).itemsize):
            out.write(array[step, y0:y0 + h, x0:x0 + w], 1, window=Window(x0, y0, w, h))
        out.set_band_description(1, name)
    cog_profile = dict(cog_profiles.get("deflate"))
    cog_profile.update(blockxsize=512, blockysize=512, predictor=3 if dtype.startswith("float") else 2)
    resampling = "average" if dtype.startswith("float") else "nearest"
    cog_translate(str(tmp), str(dst), cog_profile, nodata=fill, overview_resampling=resampling,
                  quiet=True, in_memory=False, use_cog_driver=False, add_mask=False)
    tmp.unlink()


#: Bytes read from the cube at once while a COG is assembled (zarr fetches a read's chunks
#: concurrently: one read per row of tiles rather than one per tile).
STRIP_BYTES = 64 << 20


def strips(tiles, geobox, itemsize: int, budget: int = STRIP_BYTES) -> list[tuple[int, int, int, int]]:
    """Windows ``(y0, x0, height, width)`` covering the GeoBox row of tiles by row of tiles, each
    as wide as ``budget`` bytes allow (whole tiles), so a COG of 10,000 tiles takes ~100 reads."""
    out = []
    for iy in range(tiles.shape.y):
        first = tiles[iy, 0]
        y0, _ = _offset(first, geobox)
        h = first.shape.y
        ix = 0
        while ix < tiles.shape.x:
            x0 = _offset(tiles[iy, ix], geobox)[1]
            w, jx = 0, ix
            while jx < tiles.shape.x and (jx == ix or (w + tiles[iy, jx].shape.x) * h * itemsize <= budget):
                w += tiles[iy, jx].shape.x
                jx += 1
            out.append((y0, x0, h, w))
            ix = jx
    return out


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, default=str))
