"""Tile addresses in a tile matrix set (morecantile), checked before any data is read, and the
tile matrix sets the raster API hands to titiler."""

from __future__ import annotations

from functools import lru_cache

import morecantile
from morecantile.defaults import TileMatrixSets
from morecantile.models import TileMatrixSet

from stacube.errors import InvalidInput


@lru_cache(maxsize=64)
def shared_tile_matrix_set(tms_id: str) -> TileMatrixSet:
    """morecantile's tile matrix set ``tms_id``, one instance per process (read-only).

    Raises:
        morecantile.errors.InvalidIdentifier: unknown id.
    """
    return morecantile.tms.get(tms_id)


class SharedTileMatrixSets(TileMatrixSets):
    """morecantile's registry (``supported_tms`` of titiler's factories) handing out one instance
    of each tile matrix set instead of a deep copy per call: copying WebMercatorQuad took ~9 ms
    of CPU, once per tile and per lookup. titiler and rio-tiler only read them."""

    def get(self, identifier: str) -> TileMatrixSet:
        return shared_tile_matrix_set(identifier)


#: the registry the raster API's factories use
SUPPORTED_TMS = SharedTileMatrixSets(morecantile.tms.tilematrixsets)


def checked_tile_matrix_set(tms_id: str, z: int, x: int, y: int):
    """The ``morecantile.TileMatrixSet`` named ``tms_id`` when tile ``z/x/y`` exists in it.

    Raises:
        InvalidInput: unknown tile matrix set, zoom outside its levels, or column/row outside
            the matrix of that zoom (the APIs answer 400 with this reason).
    """
    try:
        tms = shared_tile_matrix_set(tms_id)
    except Exception as exc:
        raise InvalidInput(f"unknown tile matrix set {tms_id!r}") from exc
    if not tms.minzoom <= z <= tms.maxzoom:
        raise InvalidInput(f"zoom {z} is outside {tms_id} ({tms.minzoom}..{tms.maxzoom})")
    try:
        matrix = tms.matrix(z)
    except Exception as exc:  # morecantile: no matrix at this zoom (variable-width sets)
        raise InvalidInput(f"zoom {z} of {tms_id}: {exc}") from exc
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise InvalidInput(f"tile {z}/{x}/{y} is outside {tms_id} (x < {matrix.matrixWidth}, "
                           f"y < {matrix.matrixHeight})")
    return tms
