"""The parameters of a compositing job, validated.

One model serves the CLI (``stacube composite``), the Python API and the HTTP jobs API, so a
parameter means the same everywhere and bad input fails the same way (:class:`InvalidInput`
with one line naming the parameter). The shared fields and checks are
:class:`stacube.core.spec.SpecModel`'s.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stacube.algo.masking import parse_mask_cleanup
from stacube.core.geobox import check_anchor
from stacube.core.spec import SpecModel


#: Highest zoom of a tile pyramid (WebMercatorQuad, ~0.6 m pixels at the equator).
PYRAMID_MAX_ZOOM = 22
ZOOMS = re.compile(r"^\s*z?(\d+)\s*(?:-\s*z?(\d+))?\s*$")


class PyramidSpec(BaseModel):
    """A static tile pyramid written beside a job's COGs: WebMercatorQuad XYZ tiles of 256 px,
    rendered as titiler renders a tile (rio-tiler), at ``<step>/tiles/{z}/{x}/{y}.<format>``.

    Given as ``"Z0-Z1"`` (``"8-14"``, ``"z8-z14"`` or one zoom ``"12"``) or as a mapping of the
    fields below (where ``zooms: Z0-Z1`` may stand for ``minzoom`` and ``maxzoom``). Which outputs are drawn and their ranges are checked against the job's
    outputs when it is planned (:func:`stacube.jobs.pyramid.resolve_render`).
    """

    model_config = ConfigDict(extra="forbid")

    minzoom: int = Field(ge=0, le=PYRAMID_MAX_ZOOM, description="Lowest zoom written.")
    maxzoom: int = Field(ge=0, le=PYRAMID_MAX_ZOOM, description="Highest zoom written.")
    format: Literal["png", "webp"] = Field("png", description="Tile image format.")
    bands: list[str] = Field(
        default_factory=list,
        description="One or three outputs of the job, drawn as grey/colormap or RGB (default: red, green, "
                    "blue when written, else the first output).")
    expression: str | None = Field(
        None, description="rio-tiler expression over b1..bN, the bands in order (e.g. (b1-b2)/(b1+b2)); "
                          "';' separates several output bands.")
    rescale: list[tuple[float, float]] = Field(
        default_factory=list,
        description="MIN,MAX of the values drawn: one range for every band or one per band (default: "
                    "reflectance 0..0.3, an index's own range; none for 8-bit outputs).")
    colormap_name: str | None = Field(None, description="rio-tiler colormap of a one-band rendering (e.g. viridis).")
    url: str | None = Field(
        None, description="Public URL the output root is served at (a CDN or bucket website): the tile "
                          "template and TileJSON use it instead of the storage address.")

    @model_validator(mode="before")
    @classmethod
    def _zooms(cls, value):
        if isinstance(value, str):
            value = {"zooms": value}
        if isinstance(value, dict) and "zooms" in value:
            value = dict(value)
            zooms = str(value.pop("zooms"))
            match = ZOOMS.match(zooms)
            if not match:
                raise ValueError(f"{zooms!r}: expected zooms as Z0-Z1 (e.g. 8-14)")
            value.update(minzoom=int(match.group(1)), maxzoom=int(match.group(2) or match.group(1)))
        return value

    @field_validator("rescale", mode="before")
    @classmethod
    def _rescale(cls, value):
        if isinstance(value, str):
            value = [value]
        return [tuple(float(v) for v in r.split(",")) if isinstance(r, str) else r for r in value or []]

    @field_validator("colormap_name")
    @classmethod
    def _colormap(cls, value):
        from rio_tiler.colormap import cmap

        if value is not None and value not in cmap.list():
            raise ValueError(f"unknown colormap {value!r} (rio-tiler's colormaps: viridis, rdylgn, ...)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value):
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError(f"{value!r}: expected an http(s) URL")
        return value and value.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> PyramidSpec:
        if self.minzoom > self.maxzoom:
            raise ValueError(f"minzoom {self.minzoom} is above maxzoom {self.maxzoom}")
        for low, high in self.rescale:
            if not low < high:
                raise ValueError(f"rescale {low:g},{high:g}: MIN must be less than MAX")
        if self.expression is not None and not self.expression.strip():
            raise ValueError("expression is empty")
        return self


class CompositeSpec(SpecModel):
    """Parameters of ``stacube composite`` (and ``POST /jobs``)."""

    #: the job's ``kind`` column
    kind: ClassVar[str] = "composite"

    bbox: tuple[float, float, float, float] = Field(description="MINX,MINY,MAXX,MAXY in bbox_crs.")
    datetime: str = Field(description="START/END (ISO 8601; either end may be '..').")
    method: str = Field(description="One of stacube.core.methods.METHODS, or pNN (a percentile, e.g. p25).")
    bands: list[str] = Field(
        default_factory=list,
        description="Common names or asset keys (default red, green, blue; with indices and no bands, only "
                    "the indices are written).")
    max_cloud: float | None = Field(
        None, ge=0, le=100,
        description="Percent: drop scenes whose measured non-clear share of valid pixels in the area exceeds it.")
    mask_asset: str | None = None
    clear: list[int] | None = None
    crs: str | None = None
    resolution: float | None = Field(None, gt=0)
    anchor: str | None = Field(
        None, description="Where output pixel edges fall (odc-stac anchor): native (the sources' pixel "
                          "edges, default), edge (multiples of the resolution), center, floating or FX,FY.")
    grid: str | None = Field(
        None, description="Named grid: native, webmercator[-z<N>], equal-area-<R>m|km, epsg:<code>/<R>[@X,Y] (instead of "
                          "--crs/--resolution); outputs cover the area in whole pixels of it.")
    grid_tiles: bool = Field(
        False, description="With grid: cover the whole tiles of the grid that meet the area, so jobs on "
                           "one grid cut the same tiles.")
    output_collection: str | None = Field(None, description="Collection of the results.")
    tile_size: int | None = Field(
        None, ge=16, le=16384,
        description="Tile edge in output pixels (default: the largest that fits STACUBE_TILE_MEMORY).")
    mask_cleanup: tuple[int, int] | None = Field(
        None, description="OPEN,DILATE pixels: opening then dilation of the cloud mask (e.g. 2,3).")
    pyramid: PyramidSpec | None = Field(
        None, description="A static XYZ tile pyramid of each result (zooms as Z0-Z1, or minzoom, maxzoom, "
                          "format, bands, expression, rescale, colormap_name, url).")

    @field_validator("mask_cleanup", mode="before")
    @classmethod
    def _mask_cleanup(cls, value):
        return parse_mask_cleanup(value)

    @field_validator("anchor", mode="before")
    @classmethod
    def _anchor(cls, value):
        return check_anchor(value)

    @model_validator(mode="after")
    def _combinations(self) -> CompositeSpec:
        if self.grid and (self.crs or self.resolution):
            raise ValueError("--grid sets the CRS and resolution: drop --crs/--resolution")
        if self.grid and self.anchor:
            raise ValueError("--grid sets the pixel alignment: drop --anchor")
        if self.grid_tiles and not self.grid:
            raise ValueError("--grid-tiles needs --grid")
        if (self.mask_asset is None) != (self.clear is None):
            raise ValueError("--mask-asset and --clear go together")
        return self

    def job_id(self) -> str:
        """A stable id: the same parameters give the same job (re-running is idempotent)."""
        doc = self.model_dump(mode="json", exclude={"output", "tile_size"})
        digest = _digest(doc, (("mask_cleanup", None), ("anchor", None), ("grid_tiles", False), ("zarr_format", 2),
                               ("pyramid", None)))
        return f"{self.method}-{digest}"


def _digest(doc: dict, defaults: tuple = (("pyramid", None),)) -> str:
    """12 hex digits of sha256 over the parameters, without the options left at the default
    given (jobs that do not use an option keep their ids)."""
    for key, default in defaults:
        if doc.get(key) == default:
            doc.pop(key, None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


class OutputDecl(BaseModel):
    """One output of a process: dtype (float32 by default) and nodata (NaN for floats; integer
    outputs need one)."""

    model_config = ConfigDict(extra="forbid")

    dtype: str = "float32"
    nodata: float | int | None = None

    @model_validator(mode="after")
    def _check(self) -> OutputDecl:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            raise ValueError(f"unknown dtype {self.dtype!r}") from None
        if dtype.kind not in "fiu" or dtype.itemsize > 8:
            raise ValueError(f"dtype {self.dtype!r}: outputs are int8..int64, uint8..uint64, float32 or float64")
        if dtype.kind in "iu" and self.nodata is None:
            raise ValueError(f"an output of dtype {self.dtype} needs a nodata value")
        self.dtype = dtype.name
        return self


PROCESS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProcessSpec(CompositeSpec):
    """Parameters of a process job (``stacube process run``, ``POST /jobs`` with ``process``):
    the inputs and grid of a composite, and the process instead of a method.

    ``process`` is an absolute path of a module (from a configuration file) or the name of a
    registered process (entry point group ``stacube.processes``); ``version`` is the hash of its
    source, so a job of changed code is another job.
    """

    kind: ClassVar[str] = "process"

    method: str = Field("process", description="Always 'process'.")
    process: str = Field(description="Module path (absolute) or registered process name.")
    process_name: str = Field(description="The process's name (module stem or registered name).")
    version: str = Field(description="Hash of the process's source (sha256, 12 hex digits).")
    parameters: dict = Field(default_factory=dict, description="Keyword arguments of execute(cube, ...).")
    halo: int = Field(0, ge=0, le=256, description="Pixels of neighbouring data around each tile.")
    outputs: dict[str, OutputDecl] | None = Field(
        None, description="Output names with dtype and nodata (default: read off the first result).")

    @field_validator("method")
    @classmethod
    def _method(cls, value):
        if value != "process":
            raise ValueError("a process job has no compositing method")
        return value

    @field_validator("process_name")
    @classmethod
    def _name(cls, value):
        if not PROCESS_NAME.match(value):
            raise ValueError(f"{value!r} is not a process name (letters, digits, '_', '.', '-')")
        return value

    def job_id(self) -> str:
        """``<process name>-<hash of the parameters and the process version>``."""
        doc = self.model_dump(mode="json", exclude={"output", "tile_size"})
        return f"{self.process_name}-{_digest(doc)}"


def spec_from_doc(doc: dict) -> CompositeSpec:
    """The spec stored with a job (a :class:`ProcessSpec` when it names a process)."""
    return (ProcessSpec if "process" in doc else CompositeSpec).model_validate(doc)


def build_spec(**params) -> CompositeSpec:
    """Validate parameters into a :class:`CompositeSpec` (see :meth:`SpecModel.build`).

    Raises:
        InvalidInput: one line naming the first bad parameter.
    """
    return CompositeSpec.build(**params)
