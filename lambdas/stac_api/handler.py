"""``stac-api`` function: the STAC API (stac-fastapi-pgstac) behind API Gateway.

The same application as ``stacube up`` serves at ``/stac``
(:func:`stacube_services.stac.create_stac_api`), here at the root of its own app and served
under ``STACUBE_ROOT_PATH`` (``/stac``), so links read ``https://<api>/stac/...``. The database
comes from ``STACUBE_DATABASE_SECRET_ARN`` (read once per container) or the environment; the
pool holds ``STACUBE_DB_POOL_SIZE`` (1) connections, opened at the first request and kept for the
container's life. Only the STAC stack is imported here (no titiler, no odc-stac).

Handler: ``lambdas.stac_api.handler.handler`` (event: API Gateway HTTP API, payload 2.0).
"""

from __future__ import annotations

from lambdas import init_phase  # first: the collector is off while the app is built

with init_phase():
    from stacube.settings import Settings
    from stacube_services.stac import create_stac_api

    from lambdas.runtime import http_handler

    settings = Settings()
    handler = http_handler(create_stac_api(settings).app, settings.root_path)
