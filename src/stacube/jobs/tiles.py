"""The per-tile work of a compositing job: scene statistics, then composites.

Both functions are pure with respect to the catalog (they take a :class:`Plan`) and write only
their own tile's region, so tiles can run in any order, in any process, and be retried.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stacube.cube.composite import PROVENANCE_NODATA, composite
from stacube.cube.indices import get_index
from stacube.cube.load import Source, load_stack
from stacube.cube.masking import clean_stack, halo
from stacube.jobs.plan import Plan

FILL = {"provenance": PROVENANCE_NODATA, "clear_count": 0, "valid_count": 0}
DTYPES = {"provenance": "int16", "clear_count": "uint16", "valid_count": "uint16"}


def variable_dtype(name: str) -> str:
    """Output dtype of a job variable (bands and indices are float32)."""
    return DTYPES.get(name, "float32")


def variable_fill(name: str):
    """Nodata of a job variable (NaN for float32 bands and indices)."""
    return FILL.get(name, np.nan)


@dataclass
class TileStats:
    """Pixel counts of each item over one tile."""

    valid: dict[str, int]
    clear: dict[str, int]


def _tile_sources(plan: Plan, geobox, only: set[str] | None = None) -> list[Source]:
    from shapely.geometry import shape

    footprint = geobox.extent.to_crs("EPSG:4326").geom
    out = []
    for src in plan.sources:
        items = [
            i for i in src.items
            if (only is None or i["id"] in only)
            and (i.get("geometry") is None or shape(i["geometry"]).intersects(footprint))
        ]
        if items:
            out.append(Source(src.collection, items, src.assets, src.rule))
    return out


def _load_tile(plan: Plan, geobox, bands: list[str], only: set[str] | None, pool: int | None):
    """The tile's stack; with ``mask_cleanup``, loaded with a halo, cleaned, then cropped."""
    cleanup = plan.spec.mask_cleanup
    margin = halo(cleanup)
    padded = geobox.pad(margin) if margin else geobox
    stack = load_stack(_tile_sources(plan, padded, only=only), padded, bands, pool=pool)
    return clean_stack(stack, cleanup, margin) if cleanup else stack


def tile_stats(plan: Plan, tile: tuple[int, int], pool: int | None = None) -> TileStats:
    """Valid and clear pixel counts per item over one tile (quality band + reference band)."""
    geobox = plan.tiles[tile]
    stack = _load_tile(plan, geobox, plan.load_bands[:1], None, pool)
    valid = stack.observed.sum(axis=(1, 2))
    clear = stack.clear.sum(axis=(1, 2))
    return TileStats(
        {i: int(v) for i, v in zip(stack.item_ids, valid)},
        {i: int(c) for i, c in zip(stack.item_ids, clear)},
    )


def compute_tile(plan: Plan, tile: tuple[int, int], used: dict[str, float],
                 period_index: dict[str, int], n_steps: int, pool: int | None = None
                 ) -> dict[str, np.ndarray]:
    """Composite one tile for every output time step.

    Args:
        plan: the job plan.
        tile: ``(row, col)`` of the tile in the plan's tiling.
        used: ``{item id: clear ratio over the whole area}`` of the scenes that passed the filter.
        period_index: ``{item id: output time step}``.
        n_steps: number of output time steps.

    Returns:
        ``{variable: (n_steps, y, x) array}`` for every output variable of the plan.
    """
    geobox = plan.tiles[tile]
    ny, nx = geobox.shape.y, geobox.shape.x
    out = {v: np.full((n_steps, ny, nx), variable_fill(v), dtype=variable_dtype(v))
           for v in plan.variables}
    stack = _load_tile(plan, geobox, plan.load_bands, set(used), pool)
    if not stack.item_ids:
        return out
    steps = np.array([period_index[i] for i in stack.item_ids])
    for step in range(n_steps):
        sub = stack.select(steps == step)
        if not sub.item_ids:
            continue
        layers = {b: sub.bands[b] for b in plan.bands}
        for name in plan.indices:
            index = get_index(name)
            layers[name] = index.compute({c: sub.bands[c] for c in index.bands.values()})
        result = composite(
            layers, sub.observed, sub.clear, method=plan.spec.method, times=sub.times,
            clear_ratio=np.array([used[i] for i in sub.item_ids]),
            spectral={b: sub.bands[b] for b in plan.load_bands},
        )
        for var, value in result.items():
            out[var][step] = value
    return out
