"""Writing job outputs: a Zarr cube (time, y, x per variable) and one COG per variable and step.

The Zarr store (format 2, consolidated metadata) carries CF georeferencing: a ``spatial_ref``
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
                attrs: dict | None = None) -> None:
    """Create an empty Zarr cube with its coordinates and metadata (no data chunks).

    Written with zarr directly, as ``xarray.Dataset.to_zarr`` (format 2) lays it out: every
    array names its dimensions in ``_ARRAY_DIMENSIONS``; ``spatial_ref`` holds the EPSG code and
    the CF grid mapping (pyproj's ``CRS.to_cf()``, ``crs_wkt``, ``spatial_ref`` and
    ``GeoTransform``, as odc-geo and rioxarray write them); ``x``/``y`` are pixel centres;
    ``time`` is int64 seconds since 1970-01-01. No dask or xarray is needed to create it.

    Args:
        store: a local path or a zarr store (see :meth:`stacube.storage.Staging.zarr_store`).
    """
    import zarr

    edge = chunk_edge(tile_edge)
    ny, nx = geobox.shape.y, geobox.shape.x
    chunks = (1, min(edge, ny), min(edge, nx))
    group = zarr.open_group(store=store, mode="w", zarr_format=2)
    group.attrs.update(attrs or {})
    crs, affine = geobox.crs, geobox.affine
    wkt = crs.to_wkt()
    units = crs.units[0] if crs.units else "metre"
    cf = {"spatial_ref": wkt, **crs.proj.to_cf(),
          "GeoTransform": " ".join(repr(float(v)) for v in (affine.c, affine.a, affine.b, affine.f, affine.d, affine.e))}
    ref = group.create_array("spatial_ref", shape=(), dtype="int32", fill_value=None)
    ref[...] = crs.epsg or 0
    ref.attrs.update({**cf, "_ARRAY_DIMENSIONS": []})
    for dim, count, start, step in (("x", nx, affine.c, affine.a), ("y", ny, affine.f, affine.e)):
        axis = group.create_array(dim, shape=(count,), chunks=(count,), dtype="float64", fill_value=np.nan)
        axis[:] = start + (np.arange(count) + 0.5) * step
        axis.attrs.update({"units": units, "resolution": float(step), "crs": wkt, "_ARRAY_DIMENSIONS": [dim]})
    seconds = np.array([np.datetime64(t.replace(tzinfo=None), "s").astype(np.int64) for t in times], dtype=np.int64)
    time = group.create_array("time", shape=(len(times),), chunks=(max(1, len(times)),), dtype="int64",
                              fill_value=None)
    time[:] = seconds
    time.attrs.update({"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian",
                       "_ARRAY_DIMENSIONS": ["time"]})
    for name in variables:
        fill = variable_fill(name)
        # counts have no nodata: 0 is a count, not a missing value
        array = group.create_array(name, shape=(len(times), ny, nx), chunks=chunks, dtype=variable_dtype(name),
                                   fill_value=None if name.endswith("_count") else fill)
        array.attrs.update({"grid_mapping": "spatial_ref", "coordinates": "spatial_ref",
                            "_ARRAY_DIMENSIONS": ["time", "y", "x"]})
    zarr.consolidate_metadata(store, zarr_format=2)


def write_region(store, tile_geobox, parent_geobox, arrays: dict[str, np.ndarray]) -> None:
    """Write one tile's ``(time, y, x)`` arrays into the cube (idempotent: a retried tile
    overwrites its own chunks)."""
    import zarr

    y0, x0 = _offset(tile_geobox, parent_geobox)
    group = zarr.open_group(store=store, mode="r+", zarr_format=2)
    for name, value in arrays.items():
        t, ny, nx = value.shape
        group[name][:, y0:y0 + ny, x0:x0 + nx] = value


def _offset(tile_geobox, parent_geobox) -> tuple[int, int]:
    inv = ~parent_geobox.affine
    x, y = inv @ (tile_geobox.affine.c, tile_geobox.affine.f)
    return int(round(y)), int(round(x))


def finish_cube(store) -> None:
    """Consolidate the cube's metadata once every region is written."""
    import zarr

    zarr.consolidate_metadata(store, zarr_format=2)


def write_cog(cube, name: str, step: int, geobox, tiles, dst: Path) -> None:
    """One COG of variable ``name`` at time step ``step``, assembled tile by tile."""
    import rasterio
    import zarr
    from rasterio.windows import Window
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    dtype = variable_dtype(name)
    fill = variable_fill(name)
    array = zarr.open_group(store=cube, mode="r", zarr_format=2)[name]
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
        for iy in range(tiles.shape.y):
            for ix in range(tiles.shape.x):
                tile = tiles[iy, ix]
                y0, x0 = _offset(tile, geobox)
                h, w = tile.shape.y, tile.shape.x
                out.write(array[step, y0:y0 + h, x0:x0 + w], 1, window=Window(x0, y0, w, h))
        out.set_band_description(1, name)
    cog_profile = dict(cog_profiles.get("deflate"))
    cog_profile.update(blockxsize=512, blockysize=512, predictor=3 if dtype == "float32" else 2)
    resampling = "average" if dtype == "float32" else "nearest"
    cog_translate(str(tmp), str(dst), cog_profile, nodata=fill, overview_resampling=resampling,
                  quiet=True, in_memory=False, use_cog_driver=False, add_mask=False)
    tmp.unlink()


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, default=str))
