"""CloudWatch alarms and the SNS topic they notify."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacube_infra.config import StageConfig

#: Namespace and name of the custom metric counting failed jobs.
JOBS_FAILED_NAMESPACE = "stacube"
JOBS_FAILED_METRIC = "JobsFailed"

_PERIOD = Duration.minutes(5)


class Alarms(Construct):
    """An SNS topic and factory methods for the alarms that notify it.

    Every alarm fires when its metric is above zero over five minutes and
    treats missing data as OK. The topic always exists; ``alarm_email``
    subscribes an address to it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.topic = sns.Topic(
            self, "Topic", display_name=f"{config.prefix} alarms", enforce_ssl=True
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

    def _above_zero(
        self, scope: Construct, construct_id: str, metric: cloudwatch.IMetric, description: str
    ) -> cloudwatch.Alarm:
        """An alarm on ``metric > 0`` that notifies the topic."""
        return self.above(scope, construct_id, metric, 0, description)

    def above(
        self,
        scope: Construct,
        construct_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        *,
        periods: int = 1,
    ) -> cloudwatch.Alarm:
        """An alarm on ``metric > threshold`` for ``periods`` periods that notifies the topic."""
        alarm = cloudwatch.Alarm(
            scope,
            construct_id,
            alarm_name=f"{self._config.prefix}-{construct_id}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        return alarm

    def oldest_message(
        self, scope: Construct, name: str, queue: sqs.IQueue, max_age: Duration
    ) -> cloudwatch.Alarm:
        """Alarm when the oldest message of the queue ``name`` waited longer than ``max_age``."""
        metric = queue.metric_approximate_age_of_oldest_message(period=_PERIOD, statistic="Maximum")
        return self.above(
            scope,
            f"{name}-oldest-message",
            metric,
            max_age.to_seconds(),
            f"A message of the {name} queue waited more than {max_age.to_human_string()}: "
            "its consumer is throttled, failing or too few.",
        )

    def throttles(self, scope: Construct, name: str, function: lambda_.IFunction) -> cloudwatch.Alarm:
        """Alarm when the function ``name`` is throttled (its reserved concurrency is used up)."""
        metric = function.metric_throttles(period=_PERIOD, statistic="Sum")
        return self._above_zero(
            scope, f"{name}-throttles", metric,
            f"The {name} function was throttled: raise its concurrency context key or the account quota.",
        )

    def dead_letters(self, scope: Construct, name: str, dlq: sqs.IQueue) -> cloudwatch.Alarm:
        """Alarm when the dead-letter queue of ``name`` holds any message."""
        metric = dlq.metric_approximate_number_of_messages_visible(
            period=_PERIOD, statistic="Maximum"
        )
        return self._above_zero(
            scope,
            f"{name}-dlq-not-empty",
            metric,
            f"Messages of the {name} queue failed three times and wait in its dead-letter queue.",
        )

    def function_errors(
        self, scope: Construct, name: str, function: lambda_.IFunction
    ) -> cloudwatch.Alarm:
        """Alarm when the function ``name`` reports an error (uncaught or timed out)."""
        metric = function.metric_errors(period=_PERIOD, statistic="Sum")
        return self._above_zero(
            scope, f"{name}-errors", metric, f"The {name} function failed an invocation."
        )

    def jobs_failed(self, scope: Construct) -> cloudwatch.Alarm:
        """Alarm on the custom metric ``stacube/JobsFailed`` for this stage."""
        metric = cloudwatch.Metric(
            namespace=JOBS_FAILED_NAMESPACE,
            metric_name=JOBS_FAILED_METRIC,
            dimensions_map={"Stage": self._config.stage},
            period=_PERIOD,
            statistic="Sum",
        )
        return self._above_zero(
            scope, "jobs-failed", metric, "A compositing job ended in the failed state."
        )
