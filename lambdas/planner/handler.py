"""``planner`` function: plans compositing jobs and fans their tiles out.

Consumes the plan queue (batch 1): ``{"job_id", "run"}`` -> :func:`stacube.jobs.queue.plan_job`
(plan, ``scenes`` tile rows, one message per tile on ``STACUBE_TILE_QUEUE_URL``). Every input
href goes through the read gate (:class:`stacube.access.gate.ReadGate`) at planning; the tiles
read exactly the hrefs it returned. Reports partial batch failures; see :mod:`lambdas.runtime`
for the retry policy.

Handler: ``lambdas.planner.handler.handler`` (event: SQS).
"""

from __future__ import annotations

from stacube.access.gate import ReadGate
from stacube.jobs import queue
from stacube.settings import Settings

from lambdas.runtime import sqs_handler

settings = Settings()


def process(body: str, attempt: int) -> str:
    return queue.plan_job(settings, queue.parse_job_message(body), attempt=attempt, gate=ReadGate.load(settings))


handler = sqs_handler(process, "planner", settings)
