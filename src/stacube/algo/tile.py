"""The work of one tile of a composite: per-scene pixel counts, then the composites.

Both functions take their inputs explicitly (:class:`CompositeInputs`: the sources and their
items, bands, indices, method and mask cleanup) and a GeoBox, read only what meets that GeoBox,
and return arrays: compositing jobs run them per tile of a job's grid
(:mod:`stacube.jobs.tasks`), Zarr cubes per fill unit (:mod:`stacube.cubes.fill`). Tiles can run
in any order, in any process, and be retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from shapely.geometry import shape

from stacube.algo import buffers
from stacube.algo.blocks import PROVENANCE_NODATA
from stacube.algo.composite import composite
from stacube.algo.load import Source, Stack, load_stack
from stacube.algo.masking import cleanup_clear, halo
from stacube.core.indices import get_index, required_bands
from stacube.core.methods import output_variables

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

#: nodata of the counts: 0 is a count (``clear_count`` 0: observed, never clear), so nodata is
#: the largest uint16; ``clear_count`` is nodata where nothing was observed (``valid_count`` 0)
COUNT_NODATA = 65535
FILL = {"provenance": PROVENANCE_NODATA, "clear_count": COUNT_NODATA, "valid_count": COUNT_NODATA}
DTYPES = {"provenance": "int16", "clear_count": "uint16", "valid_count": "uint16"}


def variable_dtype(name: str) -> str:
    """Output dtype of a composite variable (bands and indices are float32)."""
    return DTYPES.get(name, "float32")


def variable_fill(name: str):
    """Nodata of a composite variable (NaN for float32 bands and indices)."""
    return FILL.get(name, np.nan)


@dataclass(frozen=True)
class CompositeInputs:
    """What a composite tile reads and computes.

    Attributes:
        sources: collections with their items, band mappings and quality rules.
        bands: output bands (common names or asset keys, as requested).
        indices: spectral indices computed per observation, then composited.
        method: compositing method (:mod:`stacube.core.methods`).
        mask_cleanup: ``(open, dilate)`` pixels of cloud-mask cleanup, or None.
    """

    sources: list[Source]
    bands: list[str]
    indices: list[str]
    method: str
    mask_cleanup: tuple[int, int] | None = None

    @property
    def load_bands(self) -> list[str]:
        """Bands read: the outputs', those the indices need, ``red``/``nir`` for max-NDVI."""
        extra = required_bands(["NDVI"]) if self.method == "max-ndvi" else []
        return list(dict.fromkeys([*self.bands, *required_bands(self.indices), *extra]))

    @property
    def variables(self) -> list[str]:
        """Output variables (see :func:`stacube.core.methods.output_variables`)."""
        return output_variables(self.bands, self.indices, self.method)


@dataclass
class TileStats:
    """Pixel counts of each item over one tile."""

    valid: dict[str, int]
    clear: dict[str, int]


def _tile_sources(sources: list[Source], geobox: GeoBox, only: set[str] | None = None) -> list[Source]:
    footprint = geobox.extent.to_crs("EPSG:4326").geom
    out = []
    for src in sources:
        items = [
            i for i in src.items
            if (only is None or i["id"] in only)
            and (i.get("geometry") is None or shape(i["geometry"]).intersects(footprint))
        ]
        if items:
            out.append(src.with_items(items))
    return out


def clean_stack(stack, cleanup: tuple[int, int] | None, margin: int = 0):
    """A :class:`~stacube.algo.load.Stack` with its ``clear`` mask cleaned, then ``margin``
    pixels (the halo it was loaded with) cut from every side.

    Args:
        stack: loaded on the tile's GeoBox padded by ``margin`` pixels.
        cleanup: ``(open, dilate)`` pixels, or None (only the crop).
        margin: halo width in pixels (see :func:`halo`).

    Returns:
        A new Stack on the unpadded tile (arrays are views where nothing changed).
    """
    clear = cleanup_clear(stack.observed, stack.clear, cleanup)
    if margin <= 0:
        return Stack(stack.bands, stack.observed, clear, stack.times, stack.item_ids,
                     stack.collections, stack.shape)
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    ny, nx = stack.shape
    return Stack({k: v[inner] for k, v in stack.bands.items()}, stack.observed[inner], clear[inner],
                 stack.times, stack.item_ids, stack.collections, (ny - 2 * margin, nx - 2 * margin))


def load_tile(inputs: CompositeInputs, geobox: GeoBox, bands: list[str], only: set[str] | None = None,
              pool: int | None = None) -> Stack:
    """The stack of the items that meet ``geobox``; with ``mask_cleanup``, loaded with a halo,
    cleaned, then cropped to ``geobox``."""
    margin = halo(inputs.mask_cleanup)
    padded = geobox.pad(margin) if margin else geobox
    stack = load_stack(_tile_sources(inputs.sources, padded, only=only), padded, bands, pool=pool)
    return clean_stack(stack, inputs.mask_cleanup, margin) if inputs.mask_cleanup else stack


def _release(stack: Stack) -> None:
    """Hand a stack nothing refers to any more to the next tile of a job (stacube.algo.buffers)."""
    buffers.give_back(*stack.bands.values(), stack.observed, stack.clear)


def stack_stats(stack: Stack) -> TileStats:
    """Valid and clear pixel counts per item of a loaded stack (``count_nonzero`` per slice: a
    popcount over contiguous bools, ~3x faster than ``sum``, which converts them to integers)."""
    valid = [np.count_nonzero(s) for s in stack.observed]
    clear = [np.count_nonzero(s) for s in stack.clear]
    return TileStats(
        {i: int(v) for i, v in zip(stack.item_ids, valid)},
        {i: int(c) for i, c in zip(stack.item_ids, clear)},
    )


def tile_stats(inputs: CompositeInputs, geobox: GeoBox, pool: int | None = None) -> TileStats:
    """Valid and clear pixel counts per item over one tile, from the quality band alone (the
    reference band too for a source without a quality rule): the cheap pass that the cloud
    filter and the best-pixel ranks of a job of several tiles need before compositing."""
    masks_only = all(src.rule is not None for src in inputs.sources)
    stack = load_tile(inputs, geobox, [] if masks_only else inputs.load_bands[:1], None, pool)
    stats = stack_stats(stack)
    _release(stack)
    return stats


def compute_tile(inputs: CompositeInputs, geobox: GeoBox, used: dict[str, float | None],
                 period_index: dict[str, int], n_steps: int, pool: int | None = None
                 ) -> dict[str, np.ndarray]:
    """The composites of one tile (see :func:`composite_tile`), without the counts."""
    return composite_tile(inputs, geobox, used, period_index, n_steps, pool)[0]


def composite_tile(inputs: CompositeInputs, geobox: GeoBox, used: dict[str, float | None],
                   period_index: dict[str, int], n_steps: int, pool: int | None = None
                   ) -> tuple[dict[str, np.ndarray], TileStats]:
    """Composite one tile for every output time step, and count each scene's valid and clear
    pixels from the same read.

    Args:
        inputs: what to read and compute.
        geobox: the tile's GeoBox.
        used: ``{item id: clear ratio}`` of the scenes to use (best-pixel ranks by the ratio);
            a ratio of None ranks by the scene's clear share of this tile (a job of one tile).
        period_index: ``{item id: output time step}``.
        n_steps: number of output time steps.
        pool: threads the files are read with (default: one per core).

    Returns:
        ``({variable: (n_steps, y, x) array}, per-scene counts)``: every output variable (dtypes
        and fills of :func:`variable_dtype` / :func:`variable_fill`); ``valid_count`` is 0 where
        no scene observed a pixel, and ``clear_count`` nodata (:data:`COUNT_NODATA`) there.
    """
    ny, nx = geobox.shape.y, geobox.shape.x
    out = {v: np.full((n_steps, ny, nx), variable_fill(v), dtype=variable_dtype(v))
           for v in inputs.variables}
    if "valid_count" in out:
        out["valid_count"][:] = 0  # a count: no scene observed these pixels (yet)
    stack = load_tile(inputs, geobox, inputs.load_bands, set(used), pool)
    stats = stack_stats(stack)
    if not stack.item_ids:
        return out, stats
    ratio = {i: (used[i] if used[i] is not None else stats.clear[i] / (ny * nx)) for i in stack.item_ids}
    steps = np.array([period_index[i] for i in stack.item_ids])
    for step in range(n_steps):
        sub = stack.select(steps == step)
        if not sub.item_ids:
            continue
        layers = {b: sub.bands[b] for b in inputs.bands}
        for name in inputs.indices:
            index = get_index(name)
            layers[name] = index.compute({c: sub.bands[c] for c in index.bands.values()})
        result = composite(
            layers, sub.observed, sub.clear, method=inputs.method, times=sub.times,
            clear_ratio=np.array([ratio[i] for i in sub.item_ids]),
            spectral={b: sub.bands[b] for b in inputs.load_bands},
        )
        for var, value in result.items():
            out[var][step] = value
    if "clear_count" in out and "valid_count" in out:
        out["clear_count"][out["valid_count"] == 0] = COUNT_NODATA  # no observation: no count
    _release(stack)  # the results are copies in `out`
    return out, stats
