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
        "Python 3.11 is the project's Lambda runtime: the zip wheels target its glibc 2.26."
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
        "STAC and raster APIs are public read APIs; /jobs can require IAM (jobs_auth=iam)."
    ),
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
    return True
