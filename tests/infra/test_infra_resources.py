"""Resources of the default stage: counts, storage, database, queues, API, alarms, outputs."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match, Template
from infra_helpers import STAGE, logical_id, resources_of
from stacube_infra.stack import StacubeStack

SERVICE_FUNCTIONS = {
    "stac-api",
    "db-bootstrap",
    "raster-api",
    "jobs-api",
    "ingest",
    "planner",
    "worker",
    "finalize",
    "reaper",
}
QUEUE_NAMES = ["ingest", "plan", "tile", "finalize"]


def test_resource_counts(template: Template, functions: dict[str, Any]) -> None:
    # 9 stacube functions + the CDK handlers for bucket notifications and the
    # default-security-group lock-down.
    template.resource_count_is("AWS::Lambda::Function", 11)
    assert set(functions) == SERVICE_FUNCTIONS
    template.resource_count_is("AWS::SQS::Queue", 8)  # 4 queues + 4 dead-letter queues
    template.resource_count_is("AWS::S3::Bucket", 2)
    template.resource_count_is("AWS::RDS::DBInstance", 1)
    template.resource_count_is("AWS::RDS::DBProxy", 1)
    template.resource_count_is("AWS::RDS::DBParameterGroup", 1)
    template.resource_count_is("AWS::ApiGatewayV2::Api", 1)
    template.resource_count_is("AWS::ApiGatewayV2::Route", 5)
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 7)  # 4 queues, 3 dead-letter queues
    template.resource_count_is("AWS::SecretsManager::Secret", 2)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::CloudFront::Distribution", 1)
    template.resource_count_is("AWS::ECS::TaskDefinition", 0)  # finalize_task=false


def test_parameter_group_sized_from_the_instance_class(template_json: dict) -> None:
    (group,) = resources_of(template_json, "AWS::RDS::DBParameterGroup").values()
    params = group["Properties"]["Parameters"]
    assert params["max_connections"] == "LEAST({DBInstanceClassMemory/9531392},5000)"
    assert params["shared_buffers"] == str(1024 * 1024 // 4 // 8)  # db.t4g.micro: 1 GiB, a quarter, 8 kB pages
    assert params["effective_cache_size"] == str(1024 * 1024 * 3 // 4 // 8)
    assert params["max_locks_per_transaction"] == "1024"
    assert int(params["work_mem"]) >= 4096


def test_rds_proxy_between_the_functions_and_the_database(template_json: dict, stack: StacubeStack) -> None:
    (proxy,) = resources_of(template_json, "AWS::RDS::DBProxy").values()
    props = proxy["Properties"]
    assert props["EngineFamily"] == "POSTGRESQL" and props["RequireTLS"] is True
    assert props["Auth"][0]["SecretArn"] == {"Ref": logical_id(stack.database.app_secret)}
    (target,) = resources_of(template_json, "AWS::RDS::DBProxyTargetGroup").values()
    pool = target["Properties"]["ConnectionPoolConfigurationInfo"]
    assert pool["MaxConnectionsPercent"] == 90 and pool["ConnectionBorrowTimeout"] == 5


def test_cloudfront_caches_the_apps_by_their_headers(template_json: dict) -> None:
    (dist,) = resources_of(template_json, "AWS::CloudFront::Distribution").values()
    config = dist["Properties"]["DistributionConfig"]
    cached = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    assert set(cached) == {"/stac*", "/raster*"}
    (policy,) = resources_of(template_json, "AWS::CloudFront::CachePolicy").values()
    params = policy["Properties"]["CachePolicyConfig"]
    assert params["DefaultTTL"] == 0 and params["MaxTTL"] == 365 * 86400  # the apps' Cache-Control decides
    key = params["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["QueryStringsConfig"]["QueryStringBehavior"] == "all"
    assert key["HeadersConfig"]["Headers"] == ["Authorization", "X-API-Key"]
    assert all(b["CachePolicyId"] == {"Ref": next(iter(resources_of(template_json, "AWS::CloudFront::CachePolicy")))}
               for b in cached.values())
    # the jobs API passes through uncached
    assert config["DefaultCacheBehavior"]["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"


def test_api_throttling(template_json: dict) -> None:
    (stage,) = resources_of(template_json, "AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 2000, "ThrottlingRateLimit": 1000}
    assert props["RouteSettings"] == {
        "ANY /jobs": {"ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 20},
        "ANY /jobs/{proxy+}": {"ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 20}}


def test_scaling_alarms(template_json: dict, stack: StacubeStack) -> None:
    alarms = [a["Properties"] for a in resources_of(template_json, "AWS::CloudWatch::Alarm").values()]
    by_metric: dict[str, list[dict]] = {}
    for alarm in alarms:
        by_metric.setdefault(alarm["MetricName"], []).append(alarm)
    aged = {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]: a["Threshold"]
            for a in by_metric["ApproximateAgeOfOldestMessage"]}
    queues = {name: logical_id(c.queue) for name, c in
              (("ingest", stack.ingest), ("plan", stack.planner), ("tile", stack.worker), ("finalize", stack.finalize))}
    assert aged == {queues["ingest"]: 3600, queues["plan"]: 900, queues["tile"]: 6 * 3600, queues["finalize"]: 3600}
    throttled = {a["Dimensions"][0]["Value"]["Ref"] for a in by_metric["Throttles"]}
    assert throttled == {logical_id(f) for f in stack.service_functions.values()}
    (connections,) = by_metric["DatabaseConnections"]
    assert connections["Threshold"] == int(0.8 * 84)  # db.t4g.micro: about 84 connections
    assert by_metric["CPUUtilization"][0]["Threshold"] == 80
    assert by_metric["5xx"][0]["Namespace"] == "AWS/ApiGateway"


def test_buckets_private_encrypted_tls_only(template: Template, template_json: dict) -> None:
    buckets = resources_of(template_json, "AWS::S3::Bucket")
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        assert bucket["DeletionPolicy"] == "Retain"
        rules = props["LifecycleConfiguration"]["Rules"]
        assert any(
            rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1
            for rule in rules
        )

    policies = resources_of(template_json, "AWS::S3::BucketPolicy")
    denied = set()
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (
                statement["Effect"] == "Deny"
                and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
                == "false"
            ):
                denied.add(policy["Properties"]["Bucket"]["Ref"])
    assert denied == set(buckets), "every bucket must deny non-TLS requests"


def test_outputs_bucket_expires_tmp_after_seven_days(
    template: Template, stack: StacubeStack
) -> None:
    outputs_props = template.to_json()["Resources"][logical_id(stack.storage.outputs_bucket)]
    rules = outputs_props["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"ExpirationInDays": 7, "Id": "expire-tmp", "Prefix": "tmp/", "Status": "Enabled"} in (
        rules
    )
    # the raster API's stored tiles: a cache, entries of old catalog versions never read again
    assert {"ExpirationInDays": 30, "Id": "expire-tiles", "Prefix": "tiles/", "Status": "Enabled"} in rules
    data_props = template.to_json()["Resources"][logical_id(stack.storage.data_bucket)]
    assert all(
        "tmp/" != r.get("Prefix")
        for r in data_props["Properties"]["LifecycleConfiguration"]["Rules"]
    )


def test_data_bucket_notifies_ingest_queue(template: Template, stack: StacubeStack) -> None:
    template.has_resource_properties(
        "Custom::S3BucketNotifications",
        {
            "BucketName": {"Ref": logical_id(stack.storage.data_bucket)},
            "NotificationConfiguration": {
                "QueueConfigurations": [
                    {
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {
                            "Key": {"FilterRules": [{"Name": "prefix", "Value": "ingest/"}]}
                        },
                        "QueueArn": {"Fn::GetAtt": [logical_id(stack.ingest.queue), "Arn"]},
                    }
                ]
            },
        },
    )


def test_database_private_encrypted_postgres(template: Template, template_json: dict) -> None:
    (instance,) = resources_of(template_json, "AWS::RDS::DBInstance").values()
    props = instance["Properties"]
    assert props["StorageEncrypted"] is True
    assert props["PubliclyAccessible"] is False
    assert props["Engine"] == "postgres"
    assert str(props["EngineVersion"]).split(".")[0] in ("16", "17")
    assert props["DBName"] == "stacube"
    assert props["DeletionProtection"] is True
    assert instance["DeletionPolicy"] == "Retain"


def test_database_port_open_only_to_lambda_security_group(
    template_json: dict, stack: StacubeStack
) -> None:
    db_sg = logical_id(stack.database.security_group)
    lambda_sg = logical_id(stack.network.lambda_security_group)
    pooler_sg = logical_id(stack.pooler.security_group)
    ingress = [
        r["Properties"]
        for r in resources_of(template_json, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [db_sg, "GroupId"]}
    ]
    port = {"Fn::GetAtt": [logical_id(stack.database.instance), "Endpoint.Port"]}
    assert sorted(ingress, key=str) == sorted([
        {
            "Description": description,
            "FromPort": port,
            "GroupId": {"Fn::GetAtt": [db_sg, "GroupId"]},
            "IpProtocol": "tcp",
            "SourceSecurityGroupId": {"Fn::GetAtt": [source, "GroupId"]},
            "ToPort": port,
        }  # the bootstrap reaches the instance itself; the other functions go through the proxy
        for description, source in (("PostgreSQL from the Lambda functions", lambda_sg),
                                    ("PostgreSQL from the pooler", pooler_sg))
    ], key=str)
    sg_props = template_json["Resources"][db_sg]["Properties"]
    assert "SecurityGroupIngress" not in sg_props


def test_app_secret_holds_connection_json(template: Template, stack: StacubeStack) -> None:
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "GenerateSecretString": {
                "GenerateStringKey": "password",
                "SecretStringTemplate": {
                    "Fn::Join": [
                        "",
                        [
                            Match.string_like_regexp('"host": "$'),
                            {
                                "Fn::GetAtt": [
                                    logical_id(stack.database.instance),
                                    "Endpoint.Address",
                                ]
                            },
                            Match.string_like_regexp(
                                '"port": 5432, "username": "stacube_app", "dbname": "stacube"'
                            ),
                        ],
                    ]
                },
            }
        },
    )


def test_queues_have_dlq_encryption_and_tls(template_json: dict, stack: StacubeStack) -> None:
    queues = resources_of(template_json, "AWS::SQS::Queue")
    by_name = {q["Properties"]["QueueName"]: (key, q["Properties"]) for key, q in queues.items()}
    for name in QUEUE_NAMES:
        _, props = by_name[f"stacube-{STAGE}-{name}"]
        dlq_key, dlq_props = by_name[f"stacube-{STAGE}-{name}-dlq"]
        assert props["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dlq_key, "Arn"]},
            "maxReceiveCount": 3,
        }
        assert props["SqsManagedSseEnabled"] is True
        assert dlq_props["SqsManagedSseEnabled"] is True
    tls_denied = {
        ref["Ref"]
        for policy in resources_of(template_json, "AWS::SQS::QueuePolicy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for ref in policy["Properties"]["Queues"]
    }
    assert tls_denied == set(queues)


def test_http_api_routes(template_json: dict, stack: StacubeStack) -> None:
    integrations = resources_of(template_json, "AWS::ApiGatewayV2::Integration")

    def target(route: dict) -> str:
        integration_id = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        uri = integrations[integration_id]["Properties"]["IntegrationUri"]
        return uri["Ref"] if "Ref" in uri else uri["Fn::GetAtt"][0]

    routes = {
        r["Properties"]["RouteKey"]: target(r)
        for r in resources_of(template_json, "AWS::ApiGatewayV2::Route").values()
    }
    assert routes == {  # STAC and raster through their alias (SnapStart, provisioned concurrency)
        "ANY /stac": logical_id(stack.stac_alias),
        "ANY /stac/{proxy+}": logical_id(stack.stac_alias),
        "ANY /raster/{proxy+}": logical_id(stack.raster_alias),
        "ANY /jobs": logical_id(stack.jobs_api),
        "ANY /jobs/{proxy+}": logical_id(stack.jobs_api),
    }
    for route in resources_of(template_json, "AWS::ApiGatewayV2::Route").values():
        auth = route["Properties"].get("AuthorizationType", "NONE")
        assert auth == ("AWS_IAM" if "/jobs" in route["Properties"]["RouteKey"] else "NONE")


def test_http_api_stage_logs_access(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "AccessLogSettings": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp(r"\$context\.requestId"),
            },
        },
    )


def test_db_bootstrap_custom_resource(template_json: dict, stack: StacubeStack) -> None:
    (resource,) = resources_of(template_json, "Custom::StacubeDbBootstrap").values()
    props = resource["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": [logical_id(stack.bootstrap.function), "Arn"]}
    assert set(props) == {
        "ServiceToken",
        "AdminSecretArn",
        "AppSecretArn",
        "DatabaseName",
        "PgstacVersion",
        "StatementTimeout",
        "IdleInTransactionTimeout",
    }
    assert (props["StatementTimeout"], props["IdleInTransactionTimeout"]) == ("25s", "60s")
    assert props["DatabaseName"] == "stacube"
    assert props["PgstacVersion"] == "0.10.0"
    assert props["AppSecretArn"] == {"Ref": logical_id(stack.database.app_secret)}
    admin_attachment = stack.database.instance.secret.node.default_child
    assert props["AdminSecretArn"] == {"Ref": logical_id(admin_attachment)}
    assert logical_id(stack.database.instance) in resource["DependsOn"]
    # The schema exists before any service function is created or updated.
    cr_id = logical_id(stack.bootstrap.resource)
    for name, function in stack.service_functions.items():
        depends = template_json["Resources"][logical_id(function)].get("DependsOn", [])
        assert cr_id in depends, name


def test_dlq_alarms(template_json: dict, stack: StacubeStack) -> None:
    alarms = resources_of(template_json, "AWS::CloudWatch::Alarm").values()
    dlq_alarmed = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Properties"]["Threshold"] == 0
        and a["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
    }
    consumers = [stack.ingest, stack.planner, stack.worker, stack.finalize]
    assert dlq_alarmed == {logical_id(c.work_queue.dead_letter_queue) for c in consumers}
    topic = logical_id(stack.alarms.topic)
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic}] for a in alarms)


def test_error_and_jobs_failed_alarms(template: Template, stack: StacubeStack) -> None:
    for function in (stack.worker.function, stack.finalize.function):
        template.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "MetricName": "Errors",
                "Namespace": "AWS/Lambda",
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": logical_id(function)}}],
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
            },
        )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "JobsFailed",
            "Namespace": "stacube",
            "Dimensions": [{"Name": "Stage", "Value": STAGE}],
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
        },
    )


def test_outputs(template_json: dict, stack: StacubeStack) -> None:
    outputs = template_json["Outputs"]
    expected = {
        "ApiUrl",
        "StacUrl",
        "RasterUrl",
        "JobsUrl",
        "DataBucketName",
        "OutputsBucketName",
        "DatabaseEndpoint",
        "AppSecretArn",
    }
    assert expected <= set(outputs)
    endpoint = {"Fn::GetAtt": [logical_id(stack.http_api.api), "ApiEndpoint"]}
    assert outputs["ApiUrl"]["Value"] == endpoint
    distribution = logical_id(stack.cdn.distribution)
    cdn = {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution, "DomainName"]}]]}
    assert outputs["PublicUrl"]["Value"] == cdn
    for key, path in (("StacUrl", "/stac"), ("RasterUrl", "/raster"), ("JobsUrl", "/jobs")):
        assert outputs[key]["Value"] == {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution, "DomainName"]},
                                                           path]]}
    assert outputs["DataBucketName"]["Value"] == {"Ref": logical_id(stack.storage.data_bucket)}
    assert outputs["OutputsBucketName"]["Value"] == {
        "Ref": logical_id(stack.storage.outputs_bucket)
    }
    assert outputs["AppSecretArn"]["Value"] == {"Ref": logical_id(stack.database.app_secret)}
    assert outputs["DatabaseEndpoint"]["Value"] == {
        "Fn::GetAtt": [logical_id(stack.database.instance), "Endpoint.Address"]
    }


def test_vpc_endpoints_without_nat(template: Template, template_json: dict) -> None:
    endpoints = resources_of(template_json, "AWS::EC2::VPCEndpoint").values()
    services = sorted(
        (e["Properties"].get("VpcEndpointType", "Gateway"), str(e["Properties"]["ServiceName"]))
        for e in endpoints
    )
    assert [kind for kind, _ in services] == ["Gateway", "Interface", "Interface"]
    joined = " ".join(name for _, name in services)
    assert "secretsmanager" in joined and "sqs" in joined and "s3" in joined
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    for subnet in resources_of(template_json, "AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False


def test_stack_tags(stack: StacubeStack) -> None:
    assert stack.tags.tag_values() == {"project": "stacube", "stage": STAGE}
