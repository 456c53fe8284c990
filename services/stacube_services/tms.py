"""Tile addresses in a tile matrix set (morecantile), checked before any data is read."""

from __future__ import annotations

from stacube.errors import InvalidInput


def checked_tile_matrix_set(tms_id: str, z: int, x: int, y: int):
    """The ``morecantile.TileMatrixSet`` named ``tms_id`` when tile ``z/x/y`` exists in it.

    Raises:
        InvalidInput: unknown tile matrix set, zoom outside its levels, or column/row outside
            the matrix of that zoom (the APIs answer 400 with this reason).
    """
    import morecantile

    try:
        tms = morecantile.tms.get(tms_id)
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
