"""The finalize container task: jobs whose COGs outgrow a function (ECS on Fargate).

A COG of more than ``STACUBE_FINALIZE_MAX_COG_PIXELS`` (2 billion) pixels cannot be assembled
within a function's 10 GB of memory, 10 GB of ``/tmp`` and 15 minutes; the finalize function then
starts this task instead (``ecs:RunTask``), which runs the same step
(``python3 -m lambdas.finalize.task <message>``) in the worker image with 8 vCPU, 32 GB of memory
and 200 GB of disk, for as long as it takes. The cluster costs nothing while no task runs.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacube_infra.config import StageConfig
from stacube_infra.network import Network

CPU = 8192
MEMORY_MIB = 32768
DISK_GIB = 200
CONTAINER = "finalize"


class FinalizeTask(Construct):
    """Cluster, task definition (worker image) and log group of the finalize task."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        network: Network,
        image: ecs.ContainerImage,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=network.vpc, cluster_name=f"{config.prefix}-finalize",
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            family=f"{config.prefix}-finalize",
            cpu=CPU,
            memory_limit_mib=MEMORY_MIB,
            ephemeral_storage_gib=DISK_GIB,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64 if config.architecture == "arm64"
                else ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/ecs/{config.prefix}-finalize",
            retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY,
        )
        self.container = self.task_definition.add_container(
            CONTAINER,
            container_name=CONTAINER,
            image=image,
            entry_point=["python3", "-m", "lambdas.finalize.task"],
            working_directory="/var/task",
            environment=environment,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="finalize", log_group=self.log_group),
        )
        self.subnets = network.vpc.select_subnets(subnet_group_name="app").subnet_ids
        self.security_group = network.lambda_security_group
