"""stacube: a STAC-catalog-backed Earth-observation data cube.

Scenes are STAC Items in pgSTAC; the STAC API and the raster API serve them; compositing jobs
load cubes with odc-stac, mask clouds, composite, write COG and Zarr, and register the results
as STAC Items again.
"""

from __future__ import annotations

from stacube.core.imports import install as _install_import_hooks

__version__ = "0.1.0"

_install_import_hooks()  # odc-geo without dask's import (stacube.core.imports)

__all__ = ["Datacube", "open_cube", "__version__"]


def __getattr__(name: str):
    # The facade pulls in odc-stac and xarray: import it only when asked for.
    if name == "Datacube":
        from stacube.datacube import Datacube  # lazy: `import stacube` stays light

        return Datacube
    if name == "open_cube":
        from stacube.cubes.fill import open_cube  # lazy: `import stacube` stays light

        return open_cube
    raise AttributeError(name)
