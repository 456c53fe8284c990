"""``finalize`` function: completes a compositing job once all its tiles are done.

Consumes the finalize queue (batch 1): ``{"job_id", "run"}`` ->
:func:`stacube.jobs.queue.finalize_job` (consolidated Zarr metadata, one COG per variable and
period assembled from the staged cube, the report, the commit from ``tmp/`` to ``outputs/``, and
the STAC Items). Reports partial batch failures; see :mod:`lambdas.runtime`.

Handler: ``lambdas.finalize.handler.handler`` (event: SQS).
"""

from __future__ import annotations

from stacube.jobs import queue
from stacube.settings import Settings
from stacube.storage.stores import configure_gdal

from lambdas.runtime import sqs_handler

settings = Settings()
configure_gdal(settings)


def process(body: str, attempt: int) -> str:
    return queue.finalize_job(settings, queue.parse_job_message(body), attempt=attempt)


handler = sqs_handler(process, "finalize")
