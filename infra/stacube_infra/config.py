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
PYTHON_VERSION = "3.11"

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
        jobs_auth: ``none`` or ``iam`` (SigV4) on the ``/jobs`` routes.
        nag: run the cdk-nag AwsSolutions checks at synthesis.
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
    jobs_auth: str = "none"
    nag: bool = True

    def __post_init__(self) -> None:
        if not _STAGE_PATTERN.match(self.stage):
            raise ConfigError(
                f"stage {self.stage!r} must be lowercase letters, digits and '-', "
                "start with a letter, at most 20 characters"
            )
        if self.architecture not in ("arm64", "x86_64"):
            raise ConfigError(f"architecture {self.architecture!r} must be arm64 or x86_64")
        if self.jobs_auth not in ("none", "iam"):
            raise ConfigError(f"jobs_auth {self.jobs_auth!r} must be none or iam")

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
            jobs_auth=str(ctx("jobs_auth", "none")),
            nag=_as_bool("nag", ctx("nag", True)),
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
        """pip ``--platform`` tags matching the Lambda Python 3.11 runtime (glibc 2.26).

        ``manylinux2014`` and its PEP 600 spelling ``manylinux_2_17`` name the same
        platform; pip does not treat one as the other, so both are given.
        """
        machine = "aarch64" if self.architecture == "arm64" else "x86_64"
        return (f"manylinux2014_{machine}", f"manylinux_2_17_{machine}")

    @property
    def tags(self) -> dict[str, str]:
        """Tags applied to the stack and, through CloudFormation, to its resources."""
        return {"project": "stacube", "stage": self.stage}
