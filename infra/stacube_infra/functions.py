"""Lambda functions: shared settings, zip packages and container images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import (
    Annotations,
    AssetHashType,
    BundlingOptions,
    Duration,
    RemovalPolicy,
    Size,
    Stack,
)
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacube_infra.bundling import LocalPythonBundling
from stacube_infra.config import PYTHON_VERSION, REPO_ROOT, StageConfig
from stacube_infra.network import Network

#: Image used when a Dockerfile is not written yet and bundling is skipped, so
#: the app still synthesizes. A stack that needs bundling (deploy) refuses it.
PLACEHOLDER_IMAGE_DIR = Path(__file__).resolve().parent.parent / "placeholder-image"

#: GDAL settings for functions that read rasters over HTTP (/vsis3/, /vsicurl/).
GDAL_ENVIRONMENT: Mapping[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "536870912",
    # the formats the catalog holds: COGs in either case, JPEG 2000 (Sentinel-2 archives), VRTs
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF,.jp2,.JP2,.vrt,.json",
    "GDAL_CACHEMAX": "512",
}


class MissingSourceError(FileNotFoundError):
    """A Dockerfile needed to build a function image does not exist."""


def gdal_environment(config: StageConfig) -> dict[str, str]:
    """GDAL settings, plus ``AWS_REQUEST_PAYER=requester`` when ``requester_pays`` is on."""
    env = dict(GDAL_ENVIRONMENT)
    if config.requester_pays:
        env["AWS_REQUEST_PAYER"] = "requester"
    return env


@dataclass(frozen=True)
class FunctionSpec:
    """Size and settings of one function.

    Attributes:
        name: short name; the function is called ``stacube-<stage>-<name>``.
        memory_mb: memory (and so CPU) of the function.
        timeout_s: timeout in seconds.
        environment: variables added to the shared ones.
        ephemeral_mb: size of ``/tmp``.
        description: shown in the Lambda console.
        reserved_concurrency: concurrency reserved for (and capping) the function; 0: none.
        snap_start: SnapStart on published versions (zip functions).
    """

    name: str
    memory_mb: int
    timeout_s: int
    environment: Mapping[str, str] = field(default_factory=dict)
    ephemeral_mb: int = 512
    description: str = ""
    reserved_concurrency: int = 0
    snap_start: bool = False


class FunctionFactory:
    """Creates functions that share the VPC placement, architecture and environment.

    Sources (zip packages, image build contexts) are taken from ``repo_root``.
    Every function runs in the ``app`` subnets with the shared Lambda security
    group, gets the stage-wide environment (database secret, buckets, prefixes,
    stage) and logs to ``/aws/lambda/stacube-<stage>-<name>`` kept for a month.
    """

    def __init__(
        self,
        *,
        config: StageConfig,
        network: Network,
        environment: Mapping[str, str],
        repo_root: Path = REPO_ROOT,
    ) -> None:
        self._config = config
        self._repo_root = Path(repo_root)
        self._network = network
        self._environment = dict(environment)
        self._placeholders: set[str] = set()

    @property
    def environment(self) -> dict[str, str]:
        """The stage-wide environment every function gets."""
        return dict(self._environment)

    def zip_function(
        self, scope: Construct, construct_id: str, spec: FunctionSpec, module: str
    ) -> lambda_.Function:
        """A Python 3.12 zip function running ``lambdas/<module>/handler.py:handler``.

        The package is built locally (pip for Linux wheels + copies of the
        sources) from ``lambdas/<module>/requirements.txt``.
        """
        bundler = LocalPythonBundling(
            self._repo_root,
            f"lambdas/{module}/requirements.txt",
            wheel_platforms=self._config.wheel_platforms,
            python_version=PYTHON_VERSION,
        )
        code = lambda_.Code.from_asset(
            str(self._repo_root),
            asset_hash_type=AssetHashType.OUTPUT,
            bundling=BundlingOptions(
                image=lambda_.Runtime.PYTHON_3_12.bundling_image,
                local=bundler,  # succeeds or raises, so Docker is never used
                # CDK caches staged assets by source path and bundling options; this
                # keeps two functions bundled from the same root apart.
                environment={"STACUBE_FUNCTION_SOURCE": f"lambdas/{module}"},
            ),
        )
        return self._function(
            scope,
            construct_id,
            spec,
            code=code,
            handler=f"lambdas.{module}.handler.handler",
            runtime=lambda_.Runtime.PYTHON_3_12,
        )

    def image_function(
        self,
        scope: Construct,
        construct_id: str,
        spec: FunctionSpec,
        dockerfile: str,
        cmd: Sequence[str] | None = None,
    ) -> lambda_.Function:
        """A container-image function built from ``dockerfile`` (context: repository root)."""
        code = self._image_code(scope, dockerfile, cmd)
        return self._function(
            scope,
            construct_id,
            spec,
            code=code,
            handler=lambda_.Handler.FROM_IMAGE,
            runtime=lambda_.Runtime.FROM_IMAGE,
        )

    def _image_code(
        self, scope: Construct, dockerfile: str, cmd: Sequence[str] | None
    ) -> lambda_.Code:
        """Image code for ``dockerfile``, or the placeholder when it is missing and allowed."""
        platform = self._config.image_platform
        cmd_list = list(cmd) if cmd else None
        if (self._repo_root / dockerfile).is_file():
            return lambda_.Code.from_asset_image(
                str(self._repo_root), file=dockerfile, cmd=cmd_list, platform=platform
            )
        if Stack.of(scope).bundling_required:
            raise MissingSourceError(
                f"{dockerfile} not found: the function image cannot be built. "
                "Write it, or synthesize with -c bundling=false to check the template only."
            )
        if dockerfile not in self._placeholders:
            self._placeholders.add(dockerfile)
            Annotations.of(Stack.of(scope)).add_warning_v2(
                "stacube:placeholder-image",
                f"{dockerfile} not found; using a placeholder image (do not deploy this template)",
            )
        return lambda_.Code.from_asset_image(
            str(PLACEHOLDER_IMAGE_DIR), cmd=cmd_list, platform=platform
        )

    def container_image(self, scope: Construct, dockerfile: str):
        """The image of ``dockerfile`` for an ECS task (the placeholder, like functions, when it
        is missing and bundling is off)."""
        from aws_cdk import aws_ecs as ecs

        platform = self._config.image_platform
        if (self._repo_root / dockerfile).is_file():
            return ecs.ContainerImage.from_asset(str(self._repo_root), file=dockerfile, platform=platform)
        if Stack.of(scope).bundling_required:
            raise MissingSourceError(f"{dockerfile} not found: the task image cannot be built.")
        return ecs.ContainerImage.from_asset(str(PLACEHOLDER_IMAGE_DIR), platform=platform)

    def _function(
        self,
        scope: Construct,
        construct_id: str,
        spec: FunctionSpec,
        *,
        code: lambda_.Code,
        handler: str,
        runtime: lambda_.Runtime,
    ) -> lambda_.Function:
        """The function itself, with its log group and the shared settings."""
        function_name = f"{self._config.prefix}-{spec.name}"
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        return lambda_.Function(
            scope,
            construct_id,
            function_name=function_name,
            description=spec.description or f"stacube {spec.name} ({self._config.stage})",
            code=code,
            handler=handler,
            runtime=runtime,
            architecture=self._config.lambda_architecture,
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            ephemeral_storage_size=Size.mebibytes(spec.ephemeral_mb),
            environment={**self._environment, **spec.environment},
            vpc=self._network.vpc,
            vpc_subnets=self._network.app_subnets,
            security_groups=[self._network.lambda_security_group],
            log_group=log_group,
            reserved_concurrent_executions=spec.reserved_concurrency or None,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if spec.snap_start else None,
        )
