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

from stacube.settings import Settings
from stacube.storage.stores import configure_gdal
from stacube_services.raster import create_raster_app

from lambdas.runtime import http_handler

settings = Settings()
configure_gdal(settings)
handler = http_handler(create_raster_app(settings), settings.root_path)
