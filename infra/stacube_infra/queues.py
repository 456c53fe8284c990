"""SQS work queues, each with a dead-letter queue and an alarm on it."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacube_infra.alarms import Alarms
from stacube_infra.config import StageConfig

#: Deliveries of a message before it moves to the dead-letter queue.
MAX_RECEIVE_COUNT = 3
#: Visibility timeout as a multiple of the consumer's timeout (AWS guidance: >= 6).
VISIBILITY_FACTOR = 6
#: How long a message waits at most (SQS's maximum): longer than any job may run (the reaper
#: fails jobs older than ``STACUBE_JOB_MAX_AGE``, 48 h), so no tile expires unseen.
RETENTION = Duration.days(14)


class WorkQueue(Construct):
    """A queue named ``stacube-<stage>-<name>`` with its dead-letter queue.

    Both are encrypted with SQS-managed keys (which S3 event notifications can
    write to) and refuse plain-HTTP requests. A message received three times
    without being deleted moves to the dead-letter queue, kept 14 days, and an
    alarm fires as soon as the dead-letter queue holds one, another when the oldest
    message waited longer than ``max_age``. Messages are kept 14 days.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        name: str,
        consumer_timeout_s: int,
        alarms: Alarms,
        max_age: Duration = Duration.hours(1),
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{config.prefix}-{name}-dlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=f"{config.prefix}-{name}",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=RETENTION,
            visibility_timeout=Duration.seconds(VISIBILITY_FACTOR * consumer_timeout_s),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        self.dlq_alarm = alarms.dead_letters(self, name, self.dead_letter_queue)
        self.age_alarm = alarms.oldest_message(self, name, self.queue, max_age)
