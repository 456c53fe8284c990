"""Zarr cubes: analysis-ready ``(time, y, x)`` stores of masked observations or composites,
filled procedurally from the catalog, with pyramid levels, registered as STAC Collections.

* :mod:`~stacube.cubes.spec` - parameters; :mod:`~stacube.cubes.grids` - named grids;
* :mod:`~stacube.cubes.definition` - a cube resolved against the catalog (time axis, units);
* :mod:`~stacube.cubes.arrays` - Zarr layout, CF georeferencing, the chunking and why;
* :mod:`~stacube.cubes.build` / :mod:`~stacube.cubes.fill` - creating, filling, ``open_cube``;
* :mod:`~stacube.cubes.pyramid` - levels; :mod:`~stacube.cubes.register` - the STAC Collection;
* :mod:`~stacube.cubes.timeseries` - point and polygon time series from a cube or the items.
"""

from __future__ import annotations

__all__ = ["open_cube", "create_cube", "build_cube_spec"]


def __getattr__(name: str):
    if name == "open_cube":
        from stacube.cubes.fill import open_cube  # lazy: `import stacube` stays light

        return open_cube
    if name == "create_cube":
        from stacube.cubes.build import create_cube  # lazy: `import stacube` stays light

        return create_cube
    if name == "build_cube_spec":
        from stacube.cubes.spec import build_cube_spec  # lazy: `import stacube` stays light

        return build_cube_spec
    raise AttributeError(name)
