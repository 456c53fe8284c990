"""A worker-image function fed by its own work queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacube_infra.alarms import Alarms
from stacube_infra.config import StageConfig
from stacube_infra.functions import FunctionFactory, FunctionSpec
from stacube_infra.queues import WorkQueue

#: Dockerfile of the image shared by the jobs API and the queue consumers.
WORKER_DOCKERFILE = "lambdas/worker/Dockerfile"


def worker_cmd(module: str) -> list[str]:
    """Image CMD selecting the handler ``lambdas.<module>.handler.handler``."""
    return [f"lambdas.{module}.handler.handler"]


class QueueConsumer(Construct):
    """Function + queue + dead-letter queue + alarm, wired by an SQS event source.

    The queue is called ``stacube-<stage>-<queue_name>``. The function runs the
    worker image with ``CMD lambdas.<module>.handler.handler``, reports partial
    batch failures (only failed messages are retried) and may be capped with SQS
    maximum concurrency and gather messages over a batching window. The queue's
    visibility timeout is six times the function timeout.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        factory: FunctionFactory,
        alarms: Alarms,
        spec: FunctionSpec,
        queue_name: str,
        module: str,
        batch_size: int,
        max_concurrency: int | None = None,
        batching_window: Duration | None = None,
        max_age: Duration = Duration.hours(1),
    ) -> None:
        super().__init__(scope, construct_id)
        self.work_queue = WorkQueue(
            self,
            "WorkQueue",
            config=config,
            name=queue_name,
            consumer_timeout_s=spec.timeout_s,
            alarms=alarms,
            max_age=max_age,
        )
        self.function: lambda_.Function = factory.image_function(
            self, "Function", spec, WORKER_DOCKERFILE, worker_cmd(module)
        )
        self.function.add_event_source(
            event_sources.SqsEventSource(
                self.work_queue.queue,
                batch_size=batch_size,
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
                max_batching_window=batching_window,
            )
        )

    @property
    def queue(self) -> sqs.Queue:
        """The work queue feeding the function."""
        return self.work_queue.queue
