"""``worker`` function: runs one tile of a compositing job.

Consumes the tile queue (batch 1): ``{"job_id", "run", "stage", "tile"}`` ->
:func:`stacube.jobs.queue.run_tile`, which calls :func:`stacube.jobs.tasks.execute_tile` (the
function the local executors run: odc-stac loads the scenes from S3, masks clouds, composites,
and for the ``composite`` stage writes the tile's region of the Zarr cube under
``s3://<outputs>/outputs/<job>/run-<n>/``; a ``cogs`` tile assembles one COG). Its database
calls share one connection per invocation. The worker that finishes a stage moves the job on:
after ``scenes`` it prepares the composite and sends the ``composite`` tile messages to its own
queue (``STACUBE_TILE_QUEUE_URL``, else the queue the message came from); after ``composite``
(or ``cogs``) it sends the job to ``STACUBE_FINALIZE_QUEUE_URL``. A tile already done is not run
again. Reports partial batch failures; see :mod:`lambdas.runtime` for the retry policy.

Handler: ``lambdas.worker.handler.handler`` (event: SQS).
"""

from __future__ import annotations

from stacube.jobs import queue
from stacube.settings import Settings
from stacube.storage.objects import configure_gdal

from lambdas.runtime import queue_url_of, sqs_handler

settings = Settings()
configure_gdal(settings)


def process(body: str, attempt: int) -> str:
    return queue.run_tile(settings, queue.parse_tile_message(body), attempt=attempt)


def handler(event: dict, context=None) -> dict:
    global settings
    records = event.get("Records") or []
    if settings.tile_queue_url is None and records:
        # The next stage's tiles go back to the queue this message came from.
        settings = settings.model_copy(update={"tile_queue_url": queue_url_of(records[0])})
    return sqs_handler(process, "worker", settings)(event, context)
