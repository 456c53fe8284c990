"""The stacube stack: network, database, storage, queues, functions, API, alarms."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, CfnOutput, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from stacube_infra.alarms import Alarms
from stacube_infra.api import JOBS_PATH, RASTER_PATH, STAC_PATH, HttpApi
from stacube_infra.bootstrap import DbBootstrap
from stacube_infra.cdn import Cdn
from stacube_infra.config import REPO_ROOT, StageConfig, bundling_enabled
from stacube_infra.consumers import WORKER_DOCKERFILE, QueueConsumer, worker_cmd
from stacube_infra.database import Database
from stacube_infra.finalize_task import FinalizeTask
from stacube_infra.functions import FunctionFactory, FunctionSpec, gdal_environment
from stacube_infra.nag import add_checks
from stacube_infra.network import Network
from stacube_infra.pooler import Pooler
from stacube_infra.storage import INGEST_PREFIX, TILES_PREFIX, TMP_PREFIX, Storage

RASTER_DOCKERFILE = "lambdas/raster_api/Dockerfile"
#: Messages per ingest invocation (S3 events: objects).
INGEST_BATCH = 100
#: How often the reaper looks for stuck jobs.
REAPER_SCHEDULE = Duration.minutes(5)
#: Context key CDK reads to decide which stacks bundle their assets.
BUNDLING_STACKS_KEY = "aws:cdk:bundling-stacks"


class StacubeStack(Stack):
    """Everything one stage of stacube needs, in one stack.

    One stack keeps the wiring (queue URLs, bucket names, secret ARNs) inside a
    single template, so there are no cross-stack exports to block updates, and
    ``cdk destroy`` removes a stage in one step. Function code and images are
    built from ``repo_root`` (the repository by default).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        repo_root: Path = REPO_ROOT,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"stacube data cube: STAC catalog, APIs and compositing ({config.stage})",
            tags=config.tags,
            **kwargs,
        )
        self.config = config
        self.alarms = Alarms(self, "Alarms", config=config)
        self.network = Network(self, "Network", config=config)
        self.storage = Storage(self, "Storage", config=config)
        self.database = Database(self, "Database", config=config, network=self.network)
        self.pooler = (
            Pooler(self, "Pooler", config=config, network=self.network, database=self.database)
            if config.pooler != "none" else None
        )
        self.factory = FunctionFactory(
            config=config,
            network=self.network,
            environment=self._shared_environment(),
            repo_root=repo_root,
        )
        self.bootstrap = DbBootstrap(
            self, "DbBootstrap", factory=self.factory, database=self.database, network=self.network
        )
        self._create_consumers()
        self._create_finalize_task()
        self._create_reaper()
        self._create_apis()
        self._grant()
        self._watch()
        self._order_after_bootstrap()
        self._outputs()

    # -- construction -------------------------------------------------------------

    def _shared_environment(self) -> dict[str, str]:
        """Variables every function gets (the contract with the stacube library)."""
        buckets = self.storage
        # the readers open asset hrefs only under these (the data bucket and the outputs are the
        # default; the external buckets of context read_buckets are added)
        read = {}
        if self.config.read_buckets:
            read["STACUBE_READ_PREFIXES"] = ",".join(
                [f"s3://{buckets.data_bucket.bucket_name}", buckets.output_url,
                 *(f"s3://{name}" for name in self.config.read_buckets)])
        pooled = {}
        if self.pooler is not None:  # connect to the pooler with the app secret's credentials
            pooled = {"STACUBE_DB_POOL_MODE": "transaction", "STACUBE_DATABASE_HOST": self.pooler.host,
                      "STACUBE_DATABASE_PORT": str(self.pooler.port)}
        return {
            **read,
            **pooled,
            "STACUBE_STAGE": self.config.stage,
            "STACUBE_DATABASE_SECRET_ARN": self.database.app_secret.secret_arn,
            "STACUBE_DB_POOL_SIZE": "1",
            "STACUBE_DATA_BUCKET": buckets.data_bucket.bucket_name,
            "STACUBE_OUTPUT_BUCKET": buckets.outputs_bucket.bucket_name,
            "STACUBE_OUTPUT": buckets.output_url,
            "STACUBE_TMP_PREFIX": TMP_PREFIX,
            "STACUBE_INGEST_PREFIX": INGEST_PREFIX,
        }

    def _consumer(
        self,
        construct_id: str,
        spec: FunctionSpec,
        *,
        queue_name: str,
        module: str,
        batch_size: int,
        max_concurrency: int | None = None,
        batching_window: Duration | None = None,
        max_age: Duration = Duration.hours(1),
    ) -> QueueConsumer:
        """A worker-image function fed by its own queue (see :class:`QueueConsumer`)."""
        return QueueConsumer(
            self,
            construct_id,
            config=self.config,
            factory=self.factory,
            alarms=self.alarms,
            spec=spec,
            queue_name=queue_name,
            module=module,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            batching_window=batching_window,
            max_age=max_age,
        )

    def _create_consumers(self) -> None:
        """finalize <- worker <- planner (tile fan-out), and ingest fed by S3 events."""
        gdal = gdal_environment(self.config)
        self.finalize = self._consumer(
            "Finalize",
            FunctionSpec(
                name="finalize",
                memory_mb=3072,
                timeout_s=900,
                environment=gdal,
                ephemeral_mb=4096,
                description="Commits a job's outputs and registers them as STAC Items",
            ),
            queue_name="finalize",
            module="finalize",
            batch_size=1,
            max_age=Duration.hours(1),
        )
        self.worker = self._consumer(
            "Worker",
            FunctionSpec(
                name="worker",
                memory_mb=10240,
                timeout_s=900,
                environment={**gdal, "STACUBE_FINALIZE_QUEUE_URL": self.finalize.queue.queue_url},
                ephemeral_mb=10240,
                description="Runs one tile of a job (scenes, composite or a COG)",
                reserved_concurrency=self.config.worker_concurrency,
            ),
            queue_name="tile",
            module="worker",
            batch_size=1,
            max_concurrency=self.config.worker_concurrency,
            max_age=Duration.hours(6),  # jobs queue behind each other: hours of backlog are normal
        )
        self.planner = self._consumer(
            "Planner",
            FunctionSpec(
                name="planner",
                memory_mb=3072,
                timeout_s=900,
                environment={"STACUBE_TILE_QUEUE_URL": self.worker.queue.queue_url},
                description="Splits a job into tiles and queues them",
            ),
            queue_name="plan",
            module="planner",
            batch_size=1,
            max_age=Duration.minutes(15),
        )
        self.ingest = self._consumer(
            "Ingest",
            FunctionSpec(
                name="ingest",
                memory_mb=1536,
                timeout_s=300,
                environment=gdal,
                description="Registers STAC Items / COGs dropped under ingest/",
                reserved_concurrency=self.config.ingest_concurrency,
            ),
            queue_name="ingest",
            module="ingest",
            # as eoapi-cdk's STAC loader: large batches gathered over a minute, two at a time
            batch_size=INGEST_BATCH,
            batching_window=Duration.minutes(1),
            max_concurrency=max(2, self.config.ingest_concurrency) if self.config.ingest_concurrency else 2,
        )
        self.storage.notify_ingest(self.ingest.queue)

    def _create_finalize_task(self) -> None:
        """The container task finalize hands jobs too large for a function to (``finalize_task``)."""
        self.finalize_task = None
        if not self.config.finalize_task:
            return
        self.network.add_container_endpoints(self.config)
        fn = self.finalize.function
        env = {**self.factory.environment, **gdal_environment(self.config)}
        self.finalize_task = FinalizeTask(
            self, "FinalizeTask", config=self.config, network=self.network,
            image=self.factory.container_image(self, WORKER_DOCKERFILE), environment=env,
        )
        task = self.finalize_task
        fn.add_environment("STACUBE_FINALIZE_CLUSTER", task.cluster.cluster_arn)
        fn.add_environment("STACUBE_FINALIZE_TASK_DEFINITION", task.task_definition.task_definition_arn)
        fn.add_environment("STACUBE_FINALIZE_SUBNETS", ",".join(task.subnets))
        fn.add_environment("STACUBE_FINALIZE_SECURITY_GROUPS", task.security_group.security_group_id)

    def _create_reaper(self) -> None:
        """The reaper: every five minutes, and on every dead message of plan, tile and finalize."""
        self.reaper = self.factory.image_function(
            self,
            "Reaper",
            FunctionSpec(
                name="reaper",
                memory_mb=2048,
                timeout_s=900,
                environment={
                    **gdal_environment(self.config),
                    "STACUBE_PLAN_QUEUE_URL": self.planner.queue.queue_url,
                    "STACUBE_TILE_QUEUE_URL": self.worker.queue.queue_url,
                    "STACUBE_FINALIZE_QUEUE_URL": self.finalize.queue.queue_url,
                },
                description="Heals and fails jobs that stopped moving (schedule, dead-letter queues)",
                reserved_concurrency=2,
            ),
            WORKER_DOCKERFILE,
            worker_cmd("reaper"),
        )
        for consumer in (self.planner, self.worker, self.finalize):
            self.reaper.add_event_source(event_sources.SqsEventSource(
                consumer.work_queue.dead_letter_queue, batch_size=10, report_batch_item_failures=True))
        self.reaper_schedule = events.Rule(
            self, "ReaperSchedule", rule_name=f"{self.config.prefix}-reaper",
            description="stacube: heal and fail jobs that stopped moving",
            schedule=events.Schedule.rate(REAPER_SCHEDULE),
        )
        self.reaper_schedule.add_target(targets.LambdaFunction(self.reaper, retry_attempts=0))

    def _create_apis(self) -> None:
        """STAC (zip), raster (own image) and jobs (worker image) behind one HTTP API."""
        self.stac_api = self.factory.zip_function(
            self,
            "StacApi",
            FunctionSpec(
                name="stac-api",
                memory_mb=1024,
                timeout_s=30,
                environment={"STACUBE_ROOT_PATH": STAC_PATH},
                description="STAC API (stac-fastapi-pgstac) under /stac",
                reserved_concurrency=self.config.stac_concurrency,
                snap_start=True,
            ),
            "stac_api",
        )
        # SnapStart restores published versions: the API calls the alias
        self.stac_alias = lambda_.Alias(
            self, "StacApiLive", alias_name="live", version=self.stac_api.current_version)
        self.raster_api = self.factory.image_function(
            self,
            "RasterApi",
            FunctionSpec(
                name="raster-api",
                memory_mb=2048,
                timeout_s=30,
                environment={**gdal_environment(self.config), "STACUBE_ROOT_PATH": RASTER_PATH,
                             # low-zoom tiles rendered once for every instance (s3://.../tiles)
                             "STACUBE_TILE_STORE": self.storage.tile_store_url},
                description="Raster tile API (titiler-pgstac) under /raster",
                reserved_concurrency=self.config.raster_concurrency,
            ),
            RASTER_DOCKERFILE,
        )
        self.raster_alias = lambda_.Alias(
            self, "RasterApiLive", alias_name="live", version=self.raster_api.current_version,
            provisioned_concurrent_executions=self.config.raster_provisioned or None)
        self.jobs_api = self.factory.image_function(
            self,
            "JobsApi",
            FunctionSpec(
                name="jobs-api",
                memory_mb=1024,
                timeout_s=30,
                environment={
                    "STACUBE_ROOT_PATH": JOBS_PATH,
                    "STACUBE_PLAN_QUEUE_URL": self.planner.queue.queue_url,
                },
                description="Jobs API under /jobs: submit compositing jobs, read their state",
            ),
            WORKER_DOCKERFILE,
            worker_cmd("jobs_api"),
        )
        self.http_api = HttpApi(
            self,
            "HttpApi",
            config=self.config,
            stac=self.stac_alias,
            raster=self.raster_alias,
            jobs=self.jobs_api,
        )
        self.cdn = None
        if self.config.cdn:
            domain = f"{self.http_api.api.api_id}.execute-api.{self.region}.{self.url_suffix}"
            self.cdn = Cdn(self, "Cdn", config=self.config, api_domain=domain)
        # result items link their inputs through the public STAC API
        self.finalize.function.add_environment("STACUBE_PUBLIC_URL", self.public_url)
        if self.finalize_task is not None:
            self.finalize_task.container.add_environment("STACUBE_PUBLIC_URL", self.public_url)
        # the worker finishing the last scenes tile queues the composite tiles
        self.worker.function.add_environment("STACUBE_TILE_QUEUE_URL", self.worker.queue.queue_url)

    @property
    def public_url(self) -> str:
        """Where clients reach the APIs: the distribution, else the HTTP API."""
        return self.cdn.url if self.cdn is not None else self.http_api.url.rstrip("/")

    @property
    def service_functions(self) -> dict[str, lambda_.Function]:
        """The functions that serve requests or consume queues, by short name."""
        return {
            "stac-api": self.stac_api,
            "raster-api": self.raster_api,
            "jobs-api": self.jobs_api,
            "ingest": self.ingest.function,
            "planner": self.planner.function,
            "worker": self.worker.function,
            "finalize": self.finalize.function,
            "reaper": self.reaper,
        }

    def _grant(self) -> None:
        """Least privilege: each function gets exactly the access its job needs.

        Queue consumption is granted by the event sources; everything else is here.
        """
        data = self.storage.data_bucket
        outputs = self.storage.outputs_bucket
        functions = self.service_functions
        for function in functions.values():
            self.database.app_secret.grant_read(function)

        data.grant_read(functions["ingest"])
        data.grant_read(functions["raster-api"])
        outputs.grant_read(functions["raster-api"])
        outputs.grant_put(functions["raster-api"], f"{TILES_PREFIX}*")  # its tile store, nothing else
        outputs.grant_read(functions["jobs-api"])  # it presigns the download links
        data.grant_read(functions["worker"])
        # the job's documents (plan, selection), its cube, COGs and report
        for name in ("planner", "worker", "finalize", "reaper"):
            outputs.grant_read_write(functions[name])

        self.planner.queue.grant_send_messages(functions["jobs-api"])
        self.worker.queue.grant_send_messages(functions["planner"])
        self.finalize.queue.grant_send_messages(functions["worker"])
        self.worker.queue.grant_send_messages(functions["worker"])
        for consumer in (self.planner, self.worker, self.finalize):
            consumer.queue.grant_send_messages(functions["reaper"])

        if self.finalize_task is not None:
            task = self.finalize_task.task_definition
            task.grant_run(functions["finalize"])
            outputs.grant_read_write(task.task_role)
            self.database.app_secret.grant_read(task.task_role)

        if self.config.read_buckets:
            for name in ("ingest", "raster-api", "worker"):
                self._grant_external_read(functions[name])

    def _grant_external_read(self, function: lambda_.Function) -> None:
        """Read access to the buckets listed in context ``read_buckets``."""
        buckets = self.config.read_buckets
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[f"arn:{self.partition}:s3:::{name}/*" for name in buckets],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[f"arn:{self.partition}:s3:::{name}" for name in buckets],
            )
        )

    def _watch(self) -> None:
        """Alarms: errors of the compositing functions, failed jobs, throttled functions, the
        database's connections and CPU, the API's 5xx (the queues watch their own age)."""
        alarms = self.alarms
        alarms.function_errors(self.worker, "worker", self.worker.function)
        alarms.function_errors(self.finalize, "finalize", self.finalize.function)
        alarms.function_errors(self, "reaper", self.reaper)
        alarms.jobs_failed(alarms)
        for name, function in self.service_functions.items():
            alarms.throttles(self, name, function)
        instance = self.database.instance
        alarms.above(
            self, "db-connections",
            instance.metric_database_connections(period=Duration.minutes(5), statistic="Maximum"),
            int(0.8 * self.config.max_connections),
            f"The database holds more than 80 % of its ~{self.config.max_connections} connections.",
        )
        alarms.above(
            self, "db-cpu", instance.metric_cpu_utilization(period=Duration.minutes(5), statistic="Average"),
            80, "The database's CPU was above 80 % for 15 minutes.", periods=3,
        )
        alarms.above(
            self, "api-5xx",
            self.http_api.api.metric_server_error(period=Duration.minutes(5), statistic="Sum"),
            5, "The HTTP API answered more than 5 server errors in 5 minutes.",
        )

    def _order_after_bootstrap(self) -> None:
        """Create or update the services only after the schema is in place."""
        for function in self.service_functions.values():
            function.node.add_dependency(self.bootstrap.resource)

    def _outputs(self) -> None:
        """URLs, bucket names, database endpoint and the app secret ARN."""
        url = self.http_api.url
        outputs = {
            "ApiUrl": (url, "Base URL of the HTTP API"),
            "StacUrl": (f"{self.public_url}{STAC_PATH}", "STAC API root"),
            "RasterUrl": (f"{self.public_url}{RASTER_PATH}", "Raster tile API root"),
            "JobsUrl": (f"{self.public_url}{JOBS_PATH}", "Jobs API (POST to submit, GET /jobs/{id})"),
            "DataBucketName": (self.storage.data_bucket.bucket_name, "Input scenes; ingest/"),
            "OutputsBucketName": (self.storage.outputs_bucket.bucket_name, "Job outputs"),
            "DatabaseEndpoint": (self.database.endpoint, "PostgreSQL host (private)"),
            "AppSecretArn": (self.database.app_secret.secret_arn, "stacube_app credentials"),
            "AlarmTopicArn": (self.alarms.topic.topic_arn, "SNS topic of the alarms"),
            "PublicUrl": (self.public_url, "Where clients reach the APIs (CloudFront when cdn=true)"),
        }
        if self.pooler is not None:
            outputs["DatabasePooler"] = (self.pooler.host, f"The {self.config.pooler} the functions connect to")
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)


def stack_name(config: StageConfig) -> str:
    """CloudFormation name of the stage's stack, e.g. ``stacube-dev``."""
    return config.prefix


def build_app(context: Mapping[str, Any] | None = None, **app_kwargs: Any) -> App:
    """Create the CDK app and the stack of the stage named in context ``stage``.

    Context ``bundling=false`` skips asset bundling (no pip, no image checks), as
    ``aws:cdk:bundling-stacks=[]`` does; the CLI refuses ``aws:`` keys in ``-c``.
    Context ``nag=false`` turns off the AwsSolutions checks.
    """
    app = App(context=dict(context) if context else None, **app_kwargs)
    if not bundling_enabled(app.node):
        app.node.set_context(BUNDLING_STACKS_KEY, [])
    config = StageConfig.from_node(app.node)
    stack = StacubeStack(app, stack_name(config), config=config)
    if config.nag:
        buckets = [stack.storage.data_bucket, stack.storage.outputs_bucket]
        add_checks(app, stack, config, buckets)
    return app
