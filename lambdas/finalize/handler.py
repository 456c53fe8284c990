"""``finalize`` function: completes a compositing job once all its tiles are done.

Consumes the finalize queue (batch 1): ``{"job_id", "run"}`` ->
:func:`stacube.jobs.queue.finalize_job` (consolidated Zarr metadata, one COG per variable and
period assembled from the staged cube, the report, the commit from ``tmp/`` to ``outputs/``, and
the STAC Items; a new output collection of a workspace's job is claimed for that workspace first,
:func:`stacube.access.jobs.output_claim`). Reports partial batch failures; see
:mod:`lambdas.runtime`.

Handler: ``lambdas.finalize.handler.handler`` (event: SQS).
"""

from __future__ import annotations

from stacube.access.jobs import output_claim
from stacube.jobs import queue
from stacube.settings import Settings
from stacube.storage.objects import configure_gdal

from lambdas.runtime import sqs_handler

settings = Settings()
configure_gdal(settings)


def process(body: str, attempt: int) -> str:
    return queue.finalize_job(settings, queue.parse_job_message(body), attempt=attempt,
                              on_register=output_claim(settings))


handler = sqs_handler(process, "finalize", settings)
