"""Deployment settings read from CDK context.

Every knob of the deployment is a CDK context key, given on the command line
(``cdk deploy -c stage=prod -c nat=true``) or in ``cdk.json``. Values given on
the command line arrive as strings, so booleans and integers are parsed here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from constructs import Node

#: Root of the git repository: the build context of the Lambda images and the
#: source of the zip packages.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Python version of every Lambda function (zip runtime and image base).
PYTHON_VERSION = "3.12"
#: Connection poolers a stage can put between the functions and PostgreSQL.
POOLERS = ("rds-proxy", "pgbouncer", "none")
#: Ways to authenticate the ``/jobs`` routes.
JOBS_AUTH = ("iam", "jwt", "none")

#: Memory (GiB) of the RDS instance classes the parameter group is sized for.
INSTANCE_MEMORY_GIB: dict[str, float] = {
    **{f"t4g.{size}": gib for size, gib in (("micro", 1), ("small", 2), ("medium", 4), ("large", 8),
                                             ("xlarge", 16), ("2xlarge", 32))},
    **{f"t3.{size}": gib for size, gib in (("micro", 1), ("small", 2), ("medium", 4), ("large", 8),
                                            ("xlarge", 16), ("2xlarge", 32))},
    **{f"{family}.{size}": gib for family in ("m6g", "m7g", "m6i", "m7i")
       for size, gib in (("large", 8), ("xlarge", 16), ("2xlarge", 32), ("4xlarge", 64), ("8xlarge", 128))},
    **{f"{family}.{size}": gib for family in ("r6g", "r7g", "r6i", "r7i")
       for size, gib in (("large", 16), ("xlarge", 32), ("2xlarge", 64), ("4xlarge", 128), ("8xlarge", 256))},
}

_STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A context value that cannot be used."""


def _as_bool(key: str, value: Any) -> bool:
    """Parse a boolean given as a JSON boolean or a string such as ``true``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"context {key}={value!r} is not a boolean (use true or false)")


def _as_int(key: str, value: Any, low: int, high: int) -> int:
    """Parse an integer and check it lies in ``[low, high]``."""
    try:
        number = int(str(value).strip())
    except ValueError as exc:
        raise ConfigError(f"context {key}={value!r} is not an integer") from exc
    if not low <= number <= high:
        raise ConfigError(f"context {key}={number} must be between {low} and {high}")
    return number


def _as_list(value: Any) -> tuple[str, ...]:
    """Parse a list given as a JSON list, a JSON string or a comma-separated string."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = json.loads(text)
        else:
            value = text.split(",")
    return tuple(str(item).strip() for item in value if str(item).strip())


def bundling_enabled(node: Node) -> bool:
    """False when context ``bundling`` is ``false`` (template-only synthesis)."""
    value = node.try_get_context("bundling")
    return True if value is None else _as_bool("bundling", value)


@dataclass(frozen=True)
class StageConfig:
    """Settings of one deployment (one stage) of stacube.

    Attributes:
        stage: short lowercase name used in stack, function and alarm names.
        nat: add one NAT gateway so functions can reach the internet.
        destroy: delete the database and empty the buckets on ``cdk destroy``.
        worker_concurrency: SQS maximum concurrency of the worker function.
        alarm_email: address subscribed to the alarm topic, if any.
        requester_pays: set ``AWS_REQUEST_PAYER=requester`` for GDAL readers.
        read_buckets: external buckets (e.g. public archives) the readers may read.
        architecture: ``arm64`` or ``x86_64`` for every function.
        db_instance_class: RDS instance class without the ``db.`` prefix.
        versioned: turn on S3 versioning on both buckets.
        jobs_auth: ``iam`` (SigV4, the default), ``jwt`` or ``none`` on the ``/jobs`` routes.
        jwt_issuer, jwt_audience: the token issuer and audience with ``jobs_auth=jwt``.
        nag: run the cdk-nag AwsSolutions checks at synthesis.
        pooler: ``rds-proxy`` (default), ``pgbouncer`` (an EC2 instance; needs ``nat``) or
            ``none`` between the functions and PostgreSQL.
        raster_concurrency, stac_concurrency, ingest_concurrency: reserved concurrency of those
            functions (0: none reserved); the worker reserves ``worker_concurrency``.
        api_rate, api_burst: throttling of the HTTP API stage (requests per second, burst);
            the ``/jobs`` routes get ``jobs_rate`` / ``jobs_burst``.
        cdn: CloudFront in front of the API (caches the STAC and raster GETs).
        raster_provisioned: provisioned concurrency of the raster function (0: none).
        finalize_task: the Fargate finalize task for jobs whose COGs outgrow a function (without
            NAT it needs ECR and CloudWatch Logs endpoints, ~$44 a month).
    """

    stage: str = "dev"
    nat: bool = False
    destroy: bool = False
    worker_concurrency: int = 100
    alarm_email: str | None = None
    requester_pays: bool = False
    read_buckets: tuple[str, ...] = ()
    architecture: str = "arm64"
    db_instance_class: str = "t4g.micro"
    versioned: bool = False
    jobs_auth: str = "iam"
    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()
    nag: bool = True
    pooler: str = "rds-proxy"
    raster_concurrency: int = 100
    stac_concurrency: int = 50
    ingest_concurrency: int = 2
    api_rate: int = 1000
    api_burst: int = 2000
    jobs_rate: int = 5
    jobs_burst: int = 20
    cdn: bool = True
    raster_provisioned: int = 0
    finalize_task: bool = False

    def __post_init__(self) -> None:
        if not _STAGE_PATTERN.match(self.stage):
            raise ConfigError(
                f"stage {self.stage!r} must be lowercase letters, digits and '-', "
                "start with a letter, at most 20 characters"
            )
        if self.architecture not in ("arm64", "x86_64"):
            raise ConfigError(f"architecture {self.architecture!r} must be arm64 or x86_64")
        if self.jobs_auth not in JOBS_AUTH:
            raise ConfigError(f"jobs_auth {self.jobs_auth!r} must be one of {', '.join(JOBS_AUTH)}")
        if self.jobs_auth == "jwt" and not (self.jwt_issuer and self.jwt_audience):
            raise ConfigError("jobs_auth=jwt needs jwt_issuer and jwt_audience")
        if self.pooler not in POOLERS:
            raise ConfigError(f"pooler {self.pooler!r} must be one of {', '.join(POOLERS)}")
        if self.pooler == "pgbouncer" and not self.nat:
            raise ConfigError("pooler=pgbouncer installs PgBouncer from the internet: it needs nat=true "
                              "(or use pooler=rds-proxy)")
        if self.db_instance_class not in INSTANCE_MEMORY_GIB:
            raise ConfigError(f"db_instance_class {self.db_instance_class!r} is not one the parameter group "
                              f"is sized for: {', '.join(sorted(INSTANCE_MEMORY_GIB))}")
        if self.raster_provisioned > self.raster_concurrency > 0:
            raise ConfigError("raster_provisioned cannot exceed raster_concurrency")

    @classmethod
    def from_node(cls, node: Node) -> StageConfig:
        """Build the settings from the context visible at ``node``."""

        def ctx(key: str, default: Any = None) -> Any:
            value = node.try_get_context(key)
            return default if value is None else value

        email = ctx("alarm_email")
        return cls(
            stage=str(ctx("stage", "dev")),
            nat=_as_bool("nat", ctx("nat", False)),
            destroy=_as_bool("destroy", ctx("destroy", False)),
            worker_concurrency=_as_int(
                "worker_concurrency", ctx("worker_concurrency", 100), 2, 1000
            ),
            alarm_email=(str(email).strip() or None) if email else None,
            requester_pays=_as_bool("requester_pays", ctx("requester_pays", False)),
            read_buckets=_as_list(ctx("read_buckets")),
            architecture=str(ctx("architecture", "arm64")),
            db_instance_class=str(ctx("db_instance_class", "t4g.micro")).removeprefix("db."),
            versioned=_as_bool("versioned", ctx("versioned", False)),
            jobs_auth=str(ctx("jobs_auth", "iam")),
            jwt_issuer=(str(ctx("jwt_issuer")).strip() or None) if ctx("jwt_issuer") else None,
            jwt_audience=_as_list(ctx("jwt_audience")),
            nag=_as_bool("nag", ctx("nag", True)),
            pooler=str(ctx("pooler", "rds-proxy")),
            raster_concurrency=_as_int("raster_concurrency", ctx("raster_concurrency", 100), 0, 10000),
            stac_concurrency=_as_int("stac_concurrency", ctx("stac_concurrency", 50), 0, 10000),
            ingest_concurrency=_as_int("ingest_concurrency", ctx("ingest_concurrency", 2), 0, 1000),
            api_rate=_as_int("api_rate", ctx("api_rate", 1000), 1, 100000),
            api_burst=_as_int("api_burst", ctx("api_burst", 2000), 1, 100000),
            jobs_rate=_as_int("jobs_rate", ctx("jobs_rate", 5), 1, 10000),
            jobs_burst=_as_int("jobs_burst", ctx("jobs_burst", 20), 1, 10000),
            cdn=_as_bool("cdn", ctx("cdn", True)),
            raster_provisioned=_as_int("raster_provisioned", ctx("raster_provisioned", 0), 0, 10000),
            finalize_task=_as_bool("finalize_task", ctx("finalize_task", False)),
        )

    @property
    def prefix(self) -> str:
        """Name prefix of named resources, e.g. ``stacube-dev``."""
        return f"stacube-{self.stage}"

    @property
    def removal_policy(self) -> RemovalPolicy:
        """Policy for stateful resources: RETAIN unless ``destroy=true``."""
        return RemovalPolicy.DESTROY if self.destroy else RemovalPolicy.RETAIN

    @property
    def lambda_architecture(self) -> lambda_.Architecture:
        """Lambda architecture of every function."""
        return (
            lambda_.Architecture.ARM_64
            if self.architecture == "arm64"
            else (lambda_.Architecture.X86_64)
        )

    @property
    def image_platform(self) -> ecr_assets.Platform:
        """Docker platform the Lambda images are built for."""
        return (
            ecr_assets.Platform.LINUX_ARM64
            if self.architecture == "arm64"
            else (ecr_assets.Platform.LINUX_AMD64)
        )

    @property
    def wheel_platforms(self) -> tuple[str, ...]:
        """pip ``--platform`` tags matching the Lambda Python 3.12 runtime (Amazon Linux 2023,
        glibc 2.34): manylinux wheels up to ``manylinux_2_34``.

        ``manylinux2014`` and its PEP 600 spelling ``manylinux_2_17`` name the same
        platform; pip does not treat one as the other, so both are given.
        """
        machine = "aarch64" if self.architecture == "arm64" else "x86_64"
        return (f"manylinux2014_{machine}", f"manylinux_2_17_{machine}", f"manylinux_2_28_{machine}",
                f"manylinux_2_34_{machine}")

    @property
    def instance_memory_gib(self) -> float:
        """Memory of the database instance class."""
        return INSTANCE_MEMORY_GIB[self.db_instance_class]

    @property
    def max_connections(self) -> int:
        """About the ``max_connections`` RDS gives the instance: ``LEAST(DBInstanceClassMemory /
        9531392, 5000)``, ``DBInstanceClassMemory`` being about 3/4 of the class's memory once the
        operating system took its share (``db.t4g.micro``: 84)."""
        return min(int(0.75 * self.instance_memory_gib * 1024 ** 3 / 9531392), 5000)

    @property
    def tags(self) -> dict[str, str]:
        """Tags applied to the stack and, through CloudFormation, to its resources."""
        return {"project": "stacube", "stage": self.stage}
