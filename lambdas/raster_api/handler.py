"""``raster-api`` function: the titiler-pgstac tile API behind API Gateway.

The application of ``stacube up``'s ``/raster`` (:func:`stacube_services.raster.create_raster_app`)
served under ``STACUBE_ROOT_PATH`` (``/raster``), so TileJSON, WMTS and viewer links carry the
prefix. GDAL reads assets from S3 with the settings the function's environment sets
(``GDAL_DISABLE_READDIR_ON_OPEN``, ``VSI_CACHE``, ``GDAL_HTTP_MULTIPLEX``...; see
``infra/stacube_infra/functions.py``) and the role's credentials; ``STACUBE_S3_ENDPOINT`` points
it at an S3-compatible server instead. Packaged as a container image (``Dockerfile`` here): its
dependencies exceed the 250 MB limit of zip functions.

Handler: ``lambdas.raster_api.handler.handler`` (event: API Gateway HTTP API, payload 2.0).
"""

from __future__ import annotations

import os
import sys

# This function serves pgSTAC mosaics and COG items only. rio-tiler imports its optional
# xarray reader when xarray and rioxarray are installed (they are: the library needs them), which
# pulls in dask and scipy and adds seconds to every cold start; in the function's own process,
# mark them unavailable so rio-tiler skips that reader. Nothing on its request path uses xarray.
if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    for _optional in ("rioxarray", "xarray"):
        sys.modules.setdefault(_optional, None)  # type: ignore[arg-type]

from lambdas import init_phase  # noqa: E402 - first: the collector is off while the app is built

with init_phase():
    from stacube.settings import Settings  # noqa: E402
    from stacube.storage.objects import configure_gdal  # noqa: E402
    from stacube_services.raster import create_raster_app  # noqa: E402

    from lambdas.runtime import http_handler  # noqa: E402

    settings = Settings()
    configure_gdal(settings)
    handler = http_handler(create_raster_app(settings), settings.root_path)
