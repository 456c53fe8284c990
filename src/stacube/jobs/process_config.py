"""Process configurations: a YAML file that says what process runs on which inputs, where and when.

In the spirit of mapchete's ``.mapchete`` files and Open Data Cube's ingestion configurations::

    process: my_process.py            # a module path, or a registered process name
    inputs:
      collections: [sentinel-2-l1c-eolearn-sample]
      bands: [red, nir]               # common names or asset keys
      indices: [NDVI]                 # optional: spectral indices, as bands of the cube
      mask: {asset: CLM, clear: [0]}  # optional: the quality asset and its clear values
      mask_cleanup: [1, 2]            # optional: OPEN,DILATE pixels
      max_cloud: 30                   # optional: drop scenes cloudier than this percent
    area: {bbox: [14.5514, 45.8659, 14.5642, 45.8750], crs: EPSG:4326}   # or a GeoJSON geometry
    time: 2015-07-01/2015-09-30       # optional for a process that derives it from its parameters
    output: out/                      # URI or path; default: the output root
    parameters: {}                    # passed to execute(cube, **parameters)
    # optional: period (P1M...), grid, crs, resolution, anchor, halo, tile_size,
    # output_collection, zarr_format, outputs ({name: {dtype, nodata}} or a list of names),
    # pyramid (a static XYZ tile pyramid: "Z0-Z1", or {minzoom, maxzoom, format, bands,
    # expression, rescale, colormap_name, url})

Relative paths (the module, the output) are resolved against the folder of the file. A GeoJSON
area (a geometry, a Feature or a FeatureCollection, in longitude/latitude) covers its bounding
box: pixels outside the geometry are computed too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from shapely.geometry import shape

from stacube.errors import InvalidInput, NotFound
from stacube.jobs.processes import Process, build_process_spec, load_process
from stacube.jobs.spec import ProcessSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaskConfig(_Strict):
    asset: str
    clear: list[int]


class InputsConfig(_Strict):
    collections: list[str] = Field(min_length=1)
    bands: list[str] = Field(default_factory=list)
    indices: list[str] = Field(default_factory=list)
    mask: MaskConfig | None = None
    mask_cleanup: Any = None
    max_cloud: float | None = None


class ProcessConfig(_Strict):
    """The configuration file's schema (see the module docstring)."""

    process: str
    inputs: InputsConfig
    area: dict
    time: str | None = None
    output: str | None = None
    parameters: dict = Field(default_factory=dict)
    period: str | None = None
    grid: str | None = None
    grid_tiles: bool | None = None
    crs: str | None = None
    resolution: float | None = None
    anchor: str | None = None
    halo: int | None = None
    tile_size: int | None = None
    output_collection: str | None = None
    zarr_format: int | None = None
    outputs: dict[str, dict | None] | list[str] | None = None
    pyramid: dict | str | None = None

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value):
        return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, value):
        return {} if value is None else value


def area_bbox(area: dict) -> tuple[list[float], str]:
    """``(bbox, crs)`` of a configuration's ``area``: ``{bbox, crs}`` or a GeoJSON geometry,
    Feature or FeatureCollection (longitude/latitude: its bounding box).

    Raises:
        InvalidInput: neither.
    """
    if "bbox" in area and "type" not in area:
        extra = set(area) - {"bbox", "crs"}
        if extra:
            raise InvalidInput(f"area: unknown key {sorted(extra)[0]!r} (bbox, crs, or a GeoJSON geometry)")
        return area["bbox"], area.get("crs") or "EPSG:4326"
    try:
        if area.get("type") == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in area["features"]]
            bounds = [min(g.bounds[0] for g in geoms), min(g.bounds[1] for g in geoms),
                      max(g.bounds[2] for g in geoms), max(g.bounds[3] for g in geoms)]
        else:
            bounds = list(shape(area["geometry"] if area.get("type") == "Feature" else area).bounds)
    except Exception as exc:
        raise InvalidInput(f"area: neither {{bbox, crs}} nor a GeoJSON geometry ({exc})") from None
    return bounds, "EPSG:4326"


def _resolve(value: str, base: Path) -> str:
    if "://" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def read_config(path: str | Path) -> tuple[ProcessSpec, Process]:
    """The job a configuration file describes, validated, and its process (loaded).

    Raises:
        NotFound: no such file, or no such process.
        InvalidInput: malformed YAML, an unknown or bad key (one line naming it), parameters
            the process refuses, a module that does not import.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no configuration file {path}")
    base = path.resolve().parent
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"{path.name}: expected a mapping (process, inputs, area, time...)")
    try:
        config = ProcessConfig.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"{path.name}: {where}: {err['msg'].removeprefix('Value error, ')}") from None
    process = load_process(config.process, base)
    bbox, bbox_crs = area_bbox(config.area)
    inputs = config.inputs
    outputs = config.outputs
    if isinstance(outputs, list):
        outputs = {name: {} for name in outputs}
    elif isinstance(outputs, dict):
        outputs = {name: value or {} for name, value in outputs.items()}
    try:
        spec = build_process_spec(
            process, parameters=config.parameters, collections=inputs.collections, bands=inputs.bands,
            indices=inputs.indices, mask_asset=inputs.mask.asset if inputs.mask else None,
            clear=inputs.mask.clear if inputs.mask else None, mask_cleanup=inputs.mask_cleanup,
            max_cloud=inputs.max_cloud, bbox=bbox, bbox_crs=bbox_crs, datetime=config.time,
            output=_resolve(config.output, base) if config.output else None, period=config.period,
            grid=config.grid, grid_tiles=config.grid_tiles, crs=config.crs, resolution=config.resolution,
            anchor=config.anchor, halo=config.halo, tile_size=config.tile_size,
            output_collection=config.output_collection, zarr_format=config.zarr_format, outputs=outputs,
            pyramid=config.pyramid)
    except (InvalidInput, NotFound) as exc:
        raise type(exc)(f"{path.name}: {exc.message}") from None
    return spec, process
