"""AWS Solutions checks (cdk-nag) and the reasoned acknowledgements of this design."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, Annotations, App, CfnResource, Stack, Validations
from aws_cdk import aws_s3 as s3

from stacube_infra.config import StageConfig

#: Rules this design breaks on purpose, with the reason (shown in the
#: validation report). Everything else in the AwsSolutions pack must pass.
RULE_REASONS: dict[str, str] = {
    "AwsSolutions-L1": (
        "Python 3.12 is the project's Lambda runtime, the same Python as its images and locked wheels."
    ),
    "AwsSolutions-SMG4": (
        "No automatic rotation: functions read the secret once per container "
        "(docs/deploy-aws.md, Limits)."
    ),
    "AwsSolutions-S1": (
        "No S3 server access logs: a third bucket for logs is not worth it at this scale; "
        "use CloudTrail data events when an audit trail is required."
    ),
    "AwsSolutions-VPC7": (
        "No flow logs: the VPC carries only Lambda-to-RDS and AWS endpoint traffic."
    ),
    "AwsSolutions-RDS3": "Single-AZ database to keep the idle cost low; restore from backups.",
    "AwsSolutions-RDS11": "Default port 5432; the instance is private and reachable from one SG.",
    "AwsSolutions-APIG4": (
        "STAC and raster APIs are public read APIs; /jobs requires IAM or a JWT unless jobs_auth=none."
    ),
    "AwsSolutions-CFR1": "No geo restriction: the catalog and tiles serve every country.",
    "AwsSolutions-CFR2": "No WAF: the HTTP API throttles requests and the functions' concurrency is reserved.",
    "AwsSolutions-CFR3": "No CloudFront access logs: the HTTP API logs every request that reaches it.",
    "AwsSolutions-CFR4": "The default CloudFront domain (TLS 1.2 minimum); a custom domain sets its own policy.",
    "AwsSolutions-ECS2": "The finalize task's settings are plain names and ARNs, not secrets (the secret is read at run time).",
}

#: AWS managed policies attached to the function roles.
MANAGED_POLICIES = ("AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole")
MANAGED_POLICY_REASON = (
    "Functions use AWSLambdaBasicExecutionRole (logs) and AWSLambdaVPCAccessExecutionRole "
    "(network interfaces, which need Resource '*'); nothing else is managed."
)

#: Action groups of the CDK bucket grants (read, read/write).
S3_GRANT_ACTIONS = ("s3:Abort*", "s3:DeleteObject*", "s3:GetBucket*", "s3:GetObject*", "s3:List*")
S3_GRANT_REASON = (
    "CDK bucket grants: object keys of this stage's own buckets (<bucket>/*) and action "
    "groups scoped to those bucket ARNs; no other bucket and no s3:*."
)


EXTERNAL_READ_REASON = (
    "Read-only access to the objects of the external buckets named in context read_buckets."
)
NO_DELETION_PROTECTION_REASON = "destroy=true: a disposable stage whose database may be deleted."


def acknowledgements(
    stack: Stack, config: StageConfig, buckets: Iterable[s3.IBucket]
) -> list[Acknowledgment]:
    """Every finding this design accepts for ``config``, with its reason."""
    acks = [
        Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason)
        for rule, reason in RULE_REASONS.items()
    ]
    acks += [
        Acknowledgment(
            id=(
                "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:"
                f"policy/service-role/{policy}]"
            ),
            reason=MANAGED_POLICY_REASON,
        )
        for policy in MANAGED_POLICIES
    ]
    acks += [
        Acknowledgment(
            id=f"AwsSolutions::AwsSolutions-IAM5[Action::{action}]", reason=S3_GRANT_REASON
        )
        for action in S3_GRANT_ACTIONS
    ]
    for bucket in buckets:
        cfn = bucket.node.default_child
        assert isinstance(cfn, CfnResource)
        logical_id = stack.resolve(stack.get_logical_id(cfn))
        acks.append(
            Acknowledgment(
                id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/*]",
                reason=S3_GRANT_REASON,
            )
        )
    acks += [
        Acknowledgment(
            id=f"AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{name}/*]",
            reason=EXTERNAL_READ_REASON,
        )
        for name in config.read_buckets
    ]
    if config.destroy:
        acks.append(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-RDS10", reason=NO_DELETION_PROTECTION_REASON
            )
        )
    return acks


def add_checks(app: App, stack: Stack, config: StageConfig, buckets: Iterable[s3.IBucket]) -> bool:
    """Run the AwsSolutions pack on ``app`` at synthesis; False when cdk-nag is missing."""
    try:
        from cdk_nag import AwsSolutionsChecks
    except ImportError:
        Annotations.of(stack).add_warning_v2(
            "stacube:nag-missing", "cdk-nag is not installed: AwsSolutions checks skipped"
        )
        return False
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    Validations.of(stack).acknowledge(*acknowledgements(stack, config, buckets))
    for scope, acks in scoped_acknowledgements(stack).items():
        Validations.of(scope).acknowledge(*acks)
    return True


def scoped_acknowledgements(stack: Stack) -> dict:
    """Findings accepted on one construct only (construct -> acknowledgments)."""
    found: dict = {}
    task = getattr(stack, "finalize_task", None)
    if task is not None and task.task_definition.execution_role is not None:
        found[task.task_definition.execution_role] = [Acknowledgment(
            id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            reason="The finalize task's execution role pulls its image: ecr:GetAuthorizationToken "
                   "takes no resource.")]
    pooler = getattr(stack, "pooler", None)
    if pooler is not None and getattr(pooler, "instance", None) is not None:
        found[pooler] = [
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                   "AmazonSSMManagedInstanceCore]",
                reason="PgBouncer's instance is reached through Systems Manager (no SSH, no key pair)."),
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-EC29",
                reason="PgBouncer keeps no state: a replaced instance is rebuilt from its user data."),
        ]
    stac = getattr(stack, "stac_api", None)
    if stac is not None:
        found[stac] = [Acknowledgment(
            id="Annotation::@aws-cdk/aws-lambda:snapStartRequirePublish",
            reason="The API calls the alias 'live' of the function's current published version.")]
    raster = getattr(stack, "raster_api", None)
    storage = getattr(stack, "storage", None)
    if raster is not None and storage is not None:
        outputs = storage.outputs_bucket.node.default_child
        assert isinstance(outputs, CfnResource)
        found[raster] = [Acknowledgment(
            id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{stack.resolve(stack.get_logical_id(outputs))}.Arn>/tiles/*]",
            reason="The raster API writes its tile store only: objects under tiles/ of the outputs bucket.")]
    return found
