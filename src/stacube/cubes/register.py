"""Registering cubes in the catalog: one STAC Collection per cube, with Zarr assets.

The collection (id = the cube name) carries collection-level assets, one per pyramid level
(``zarr`` for full resolution, ``zarr-level-<k>`` for the others; media type
``application/vnd+zarr``, ``xarray:open_kwargs`` of the xarray-assets extension), the datacube
extension's ``cube:dimensions`` / ``cube:variables``, the spatial and temporal extent of the
cube, ``derived_from`` links to the source collections and ``stacube:cube`` (grid, chunks,
mode, levels), so a STAC client finds the cube and opens it with
``xarray.open_zarr(collection.assets["zarr"].href)``.
"""

from __future__ import annotations

from stacube.catalog.products import STAC_VERSION
from stacube.core.crs import proj_fields
from stacube.catalog.pgstac import Catalog
from stacube.cubes.arrays import variable_attrs
from stacube.cubes.definition import QUALITY, CubeDefinition
from stacube.settings import Settings

ZARR_TYPE = "application/vnd+zarr"
DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
XARRAY_ASSETS = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"
CUBE_KEY = "stacube:cube"


def is_cube_collection(collection: dict) -> bool:
    return CUBE_KEY in collection


def level_href(definition: CubeDefinition, level: int) -> str:
    """The address readers use: a local path or an ``s3://`` URI."""
    uri = definition.level_uri(level)
    return uri[7:] if uri.startswith("file://") else uri


def _reference_system(definition: CubeDefinition):
    epsg = definition.geobox.crs.epsg
    return epsg if epsg else definition.geobox.crs.to_wkt()


def cube_collection(definition: CubeDefinition) -> dict:
    """The STAC Collection document of a cube (see the module docstring)."""
    gb = definition.geobox
    bounds = gb.extent.boundingbox
    steps = definition.steps
    spec = definition.spec
    assets = {}
    for level in range(definition.levels):
        lgb = definition.level_geobox(level)
        key = "zarr" if level == 0 else f"zarr-level-{level}"
        assets[key] = {
            "href": level_href(definition, level), "type": ZARR_TYPE,
            "title": f"Zarr cube, level {level} ({abs(lgb.resolution.x):g} {gb.crs.units[0] if gb.crs.units else ''} pixels)",
            "roles": ["data", "zarr"] if level == 0 else ["data", "zarr", "overview"],
            "xarray:open_kwargs": {"engine": "zarr", "consolidated": True, "chunks": {}},
            "stacube:level": level,
            **proj_fields(gb.crs),
            "proj:shape": [lgb.shape.y, lgb.shape.x],
            "proj:transform": list(lgb.affine)[:6],
        }
    cube_variables = {}
    for var in definition.variables:
        attrs = variable_attrs(definition, var)
        entry = {"type": "auxiliary" if var in (QUALITY, "provenance", "clear_count", "valid_count") else "data",
                 "dimensions": ["time", "y", "x"], "data_type": definition.dtype(var),
                 "description": attrs.get("long_name", var)}
        if attrs.get("units"):
            entry["unit"] = attrs["units"]
        cube_variables[var] = entry
    what = ("masked observations (clear pixels, one step per solar day)" if definition.mode == "observations"
            else f"{spec['method']} composites" + (f" per {spec['period']}" if spec.get("period") else ""))
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [DATACUBE, XARRAY_ASSETS],
        "id": definition.name,
        "title": f"Cube {definition.name}",
        "description": spec.get("description") or (f"Analysis-ready Zarr cube of {', '.join(spec['collections'])}: {what} on grid "
                        f"{definition.grid.name}, {definition.levels} pyramid level(s). Made by stacube."),
        "license": "other",
        "keywords": ["datacube", "zarr", "stacube"],
        "extent": {"spatial": {"bbox": [definition.bbox_lonlat]},
                   "temporal": {"interval": [[steps[0]["start"], steps[-1]["end"]]]}},
        "cube:dimensions": {
            "x": {"type": "spatial", "axis": "x", "extent": [bounds.left, bounds.right],
                  "step": abs(gb.resolution.x), "reference_system": _reference_system(definition)},
            "y": {"type": "spatial", "axis": "y", "extent": [bounds.bottom, bounds.top],
                  "step": -abs(gb.resolution.y), "reference_system": _reference_system(definition)},
            "time": {"type": "temporal", "extent": [steps[0]["time"], steps[-1]["time"]],
                     **({"values": [s["time"] for s in steps]} if len(steps) <= 1000 else {})},
        },
        "cube:variables": cube_variables,
        "assets": assets,
        "summaries": {},
        "links": [{"rel": "derived_from", "href": f"../{c}", "type": "application/json", "title": c}
                  for c in spec["collections"]],
        CUBE_KEY: {
            "mode": definition.mode, "grid": definition.grid.to_doc(),
            "chunks": {"time": definition.chunks[0], "y": definition.chunks[1], "x": definition.chunks[2]},
            "tile_size": definition.tile, "levels": definition.levels, "steps": len(steps),
            "bands": definition.bands, "indices": definition.indices,
            "method": spec.get("method"), "period": spec.get("period"),
        },
    }


def register_cube(catalog: Catalog, definition: CubeDefinition, settings: Settings | None = None) -> dict:
    """Create or replace the cube's collection; returns the document."""
    doc = cube_collection(definition)
    catalog.upsert_collection(doc)
    return doc
