"""Pyramid levels of a cube, for display: level ``k`` has pixels ``2**k`` times larger.

Level ``k`` is computed from level ``k - 1`` by 2 x 2 reductions (:mod:`stacube.algo.downsample`):
the NaN-ignoring mean for bands and indices (so a coarse pixel shows the mean of the clear
observations under it), the maximum for the ``quality`` flag (clear if any pixel under it is
clear), the top-left pixel for codes and counts (``provenance``, ``clear_count``...). The same
time axis and chunks as level 0. After level-0 tiles are filled only the level blocks above
them are recomputed, one cube at a time (an advisory lock in the catalog database), so two
processes filling neighbouring tiles do not overwrite each other's coarse chunks.
"""

from __future__ import annotations

from stacube.cubes.definition import QUALITY, CubeDefinition
from stacube.algo.downsample import downsample_max, downsample_mean, downsample_nearest
from stacube.cubes.records import CubeRecords, Unit
from stacube.cubes.arrays import read_block, write_block
from stacube.settings import Settings


def reduce(definition: CubeDefinition, var: str, block):
    """One 2 x 2 reduction of a ``(t, y, x)`` block of ``var`` (see the module docstring)."""
    if block.dtype.kind == "f":  # bands and indices (integer bands are read decoded)
        return downsample_mean(block)
    if var == QUALITY:
        return downsample_max(block)
    return downsample_nearest(block)


def update_levels(definition: CubeDefinition, settings: Settings, units: list[Unit]) -> int:
    """Recompute the blocks of levels ``1 ..`` above the given level-0 fill units.

    Returns:
        Number of level blocks written.
    """
    if definition.levels <= 1 or not units:
        return 0
    tile = definition.tile
    written = 0
    with CubeRecords(settings).lock(definition.name):
        for level in range(1, definition.levels):
            factor = 2 ** level
            blocks = sorted({(tb, iy // factor, ix // factor) for iy, ix, tb in units})
            below = definition.level_geobox(level - 1).shape
            here = definition.level_geobox(level).shape
            for tb, by, bx in blocks:
                steps = definition.block_steps(tb)
                rows = slice(by * tile, min(here.y, (by + 1) * tile))
                cols = slice(bx * tile, min(here.x, (bx + 1) * tile))
                src = read_block(
                    definition, settings, level - 1, slice(steps.start, steps.stop),
                    slice(2 * rows.start, min(below.y, 2 * rows.stop)),
                    slice(2 * cols.start, min(below.x, 2 * cols.stop)), definition.variables)
                out = {var: reduce(definition, var, block)[:, :rows.stop - rows.start, :cols.stop - cols.start]
                       for var, block in src.items()}
                write_block(definition, settings, level, steps.start, rows.start, cols.start, out)
                written += 1
    return written
