"""Context keys: NAT, teardown, IAM on /jobs, alarm e-mail, requester pays, external buckets."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App
from aws_cdk.assertions import Match, Template
from infra_helpers import functions_by_name, logical_id, resources_of
from stacube_infra.config import ConfigError, StageConfig
from stacube_infra.stack import StacubeStack


def test_nat_gateway_and_egress_subnets(variant_template: Template) -> None:
    variant_template.resource_count_is("AWS::EC2::NatGateway", 1)
    variant_template.resource_count_is("AWS::EC2::InternetGateway", 1)
    # With a NAT the interface endpoints are left out; the S3 gateway stays.
    endpoints = resources_of(variant_template.to_json(), "AWS::EC2::VPCEndpoint")
    assert [e["Properties"].get("VpcEndpointType", "Gateway") for e in endpoints.values()] == [
        "Gateway"
    ]


def test_destroy_deletes_data(variant_template: Template, variant_stack: StacubeStack) -> None:
    resources = variant_template.to_json()["Resources"]
    for bucket in (variant_stack.storage.data_bucket, variant_stack.storage.outputs_bucket):
        assert resources[logical_id(bucket)]["DeletionPolicy"] == "Delete"
    variant_template.resource_count_is("Custom::S3AutoDeleteObjects", 2)
    instance = resources[logical_id(variant_stack.database.instance)]
    assert instance["DeletionPolicy"] == "Delete"
    assert instance["Properties"]["DeletionProtection"] is False


def test_jobs_routes_require_a_token(variant_template: Template) -> None:
    routes = resources_of(variant_template.to_json(), "AWS::ApiGatewayV2::Route").values()
    auth = {r["Properties"]["RouteKey"]: r["Properties"].get("AuthorizationType") for r in routes}
    assert auth["ANY /jobs"] == "JWT" and auth["ANY /jobs/{proxy+}"] == "JWT"
    assert auth["ANY /stac"] in (None, "NONE") and auth["ANY /raster/{proxy+}"] in (None, "NONE")


def test_alarm_email_subscription(variant_template: Template) -> None:
    variant_template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.org"}
    )


def test_requester_pays_architecture_and_concurrency(variant_template: Template) -> None:
    template_json = variant_template.to_json()
    functions = functions_by_name(template_json)
    for name in ("raster-api", "worker"):
        assert functions[name]["Environment"]["Variables"]["AWS_REQUEST_PAYER"] == "requester"
    assert {tuple(p["Architectures"]) for p in functions.values()} == {("x86_64",)}
    mappings = resources_of(template_json, "AWS::Lambda::EventSourceMapping").values()
    assert sorted(
        m["Properties"]["ScalingConfig"]["MaximumConcurrency"] for m in mappings if "ScalingConfig" in m["Properties"]
    ) == [2, 40]  # ingest, worker
    assert functions["worker"]["ReservedConcurrentExecutions"] == 40
    assert "ReservedConcurrentExecutions" not in functions["stac-api"]  # stac_concurrency=0


def test_pgbouncer_in_transaction_mode(variant_template: Template, variant_stack: StacubeStack) -> None:
    template_json = variant_template.to_json()
    variant_template.resource_count_is("AWS::RDS::DBProxy", 0)
    (instance,) = resources_of(template_json, "AWS::EC2::Instance").values()
    props = instance["Properties"]
    assert props["InstanceType"] == "t3.nano"  # x86_64 variant
    script = json.dumps(props["UserData"])
    assert "pool_mode = transaction" in script and "apt-get install -y -q pgbouncer" in script
    # sized from db.r6g.large (16 GiB): ~1,351 connections, 10 left for the admin and the bootstrap
    assert f"max_db_connections = {variant_stack.config.max_connections - 10}" in script
    assert variant_stack.config.max_connections == 1351
    env = functions_by_name(template_json)["worker"]["Environment"]["Variables"]
    assert env["STACUBE_DB_POOL_MODE"] == "transaction"
    instance_id, attribute = env["STACUBE_DATABASE_HOST"]["Fn::GetAtt"]
    assert (instance_id, attribute) == (next(iter(resources_of(template_json, "AWS::EC2::Instance"))), "PrivateIp")


def test_variant_options(variant_template: Template, variant_stack: StacubeStack) -> None:
    template_json = variant_template.to_json()
    variant_template.resource_count_is("AWS::CloudFront::Distribution", 0)  # cdn=false
    aliases = [a["Properties"] for a in resources_of(template_json, "AWS::Lambda::Alias").values()]
    raster = [a for a in aliases if a["FunctionName"] == {"Ref": logical_id(variant_stack.raster_api)}]
    assert raster[0]["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 5}
    (authorizer,) = resources_of(template_json, "AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert authorizer["Properties"]["JwtConfiguration"] == {
        "Audience": ["stacube"], "Issuer": "https://login.example.org"}


def test_versioned_buckets(variant_template: Template) -> None:
    variant_template.all_resources_properties(
        "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}}
    )


def test_external_buckets_read_only(
    variant_template: Template, variant_stack: StacubeStack
) -> None:
    template_json = variant_template.to_json()
    readers = {"ingest", "raster-api", "worker"}
    for name, function in variant_stack.service_functions.items():
        role = template_json["Resources"][logical_id(function)]["Properties"]["Role"]["Fn::GetAtt"][
            0
        ]
        statements = [
            s
            for p in resources_of(template_json, "AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"]
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        external = [s for s in statements if "usgs-landsat" in str(s["Resource"])]
        if name in readers:
            actions = {
                a
                for s in external
                for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
            }
            assert actions == {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}, name
            assert "sentinel-cogs" in str([s["Resource"] for s in external])
        else:
            assert external == [], name


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("stage", "Prod_1"),
        ("nat", "maybe"),
        ("worker_concurrency", "1"),
        ("worker_concurrency", "lots"),
        ("architecture", "sparc"),
        ("jobs_auth", "basic"),
        ("jobs_auth", "jwt"),  # without an issuer and an audience
        ("pooler", "pgpool"),
        ("pooler", "pgbouncer"),  # without nat=true
        ("db_instance_class", "x9.huge"),
    ],
)
def test_bad_context_is_rejected(key: str, value: str) -> None:
    app = App(context={key: value})
    with pytest.raises(ConfigError):
        StageConfig.from_node(app.node)


def test_context_parsing() -> None:
    app = App(
        context={
            "stage": "prod",
            "nat": "TRUE",
            "destroy": False,
            "worker_concurrency": "250",
            "read_buckets": '["a", "b"]',
            "db_instance_class": "db.t4g.small",
        }
    )
    config = StageConfig.from_node(app.node)
    assert (config.stage, config.nat, config.destroy) == ("prod", True, False)
    assert config.worker_concurrency == 250
    assert config.read_buckets == ("a", "b")
    assert config.db_instance_class == "t4g.small"
    assert config.alarm_email is None and config.jobs_auth == "iam"  # /jobs needs credentials by default
    assert config.pooler == "rds-proxy" and config.cdn


def test_default_template_has_no_optional_extras(template: Template) -> None:
    template.resource_count_is("AWS::SNS::Subscription", 0)
    template.resource_count_is("Custom::S3AutoDeleteObjects", 0)
    template.has_resource_properties(
        "AWS::S3::Bucket",
        Match.not_(Match.object_like({"VersioningConfiguration": Match.any_value()})),
    )


def test_the_finalize_task_without_nat_gets_its_endpoints(tmp_path) -> None:
    from infra_helpers import synth_stack

    stack = synth_stack(tmp_path, finalize_task="true", nag="false")
    template_json = Template.from_stack(stack).to_json()
    services = {str(e["Properties"]["ServiceName"]) for e in resources_of(template_json, "AWS::EC2::VPCEndpoint").values()}
    for name in ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "sqs"):
        assert any(name in s for s in services), (name, services)
    (task,) = resources_of(template_json, "AWS::ECS::TaskDefinition").values()
    assert task["Properties"]["Cpu"] == "8192" and task["Properties"]["EphemeralStorage"] == {"SizeInGiB": 200}
    assert task["Properties"]["ContainerDefinitions"][0]["EntryPoint"] == ["python3", "-m", "lambdas.finalize.task"]
