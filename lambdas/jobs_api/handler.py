"""``jobs-api`` function: submit compositing jobs over HTTP, follow them.

``POST /jobs`` takes the parameters of ``stacube composite`` (400/404/422 JSON on bad input),
records the job and sends ``{"job_id", "run"}`` to the plan queue (``STACUBE_PLAN_QUEUE_URL``,
:class:`stacube.jobs.queue.QueueLauncher`); ``GET /jobs``, ``GET /jobs/{id}`` (state, stage,
tiles done/failed/total, outputs as presigned S3 URLs, report), ``GET /jobs/{id}/report``,
``POST /jobs/{id}/cancel``. Served under ``STACUBE_ROOT_PATH`` (``/jobs``). Runs in the worker
image.

Handler: ``lambdas.jobs_api.handler.handler`` (event: API Gateway HTTP API, payload 2.0).
"""

from __future__ import annotations

from lambdas import init_phase  # first: the collector is off while the app is built

with init_phase():
    from stacube.jobs.queue import QueueLauncher
    from stacube.settings import Settings
    from stacube_services.jobs import create_jobs_app

    from lambdas.runtime import http_handler

    settings = Settings()
    handler = http_handler(
        create_jobs_app(settings, launcher=QueueLauncher(settings), mount=settings.root_path or "/jobs"),
        settings.root_path,
    )
