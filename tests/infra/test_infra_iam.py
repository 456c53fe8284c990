"""Least privilege: no wildcards, and each function gets only what its job needs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from infra_helpers import logical_id, resources_of
from stacube_infra.stack import StacubeStack

SERVICE_WILDCARD = re.compile(r"^[a-z0-9-]+:\*$")
ALLOWED_MANAGED_POLICIES = {"AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole"}
S3_WRITE = {"s3:PutObject", "s3:DeleteObject*", "s3:Abort*"}


def as_list(value: Any) -> list[Any]:
    """A statement field (a value or a list of values) as a list."""
    return value if isinstance(value, list) else [value]


def identity_statements(template_json: dict) -> Iterator[tuple[str, dict]]:
    """(policy or role logical ID, statement) for every identity policy statement."""
    for key, policy in resources_of(template_json, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield key, statement
    for key, policy in resources_of(template_json, "AWS::IAM::ManagedPolicy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield key, statement
    for key, role in resources_of(template_json, "AWS::IAM::Role").items():
        for inline in role["Properties"].get("Policies", []):
            for statement in inline["PolicyDocument"]["Statement"]:
                yield key, statement


def resource_policy_statements(template_json: dict) -> Iterator[tuple[str, dict]]:
    """Statements of bucket, queue and topic policies."""
    for kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
        for key, policy in resources_of(template_json, kind).items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                yield key, statement


def role_statements(template_json: dict, function_id: str) -> list[dict]:
    """Allow statements of the default policy attached to a function's role."""
    role = template_json["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in resources_of(template_json, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def referenced_ids(value: Any) -> set[str]:
    """Logical IDs referenced (Ref / Fn::GetAtt) anywhere inside ``value``."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value:
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for inner in value.values():
            found |= referenced_ids(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= referenced_ids(inner)
    return found


def access(template_json: dict, function_id: str, prefix: str) -> dict[str, set[str]]:
    """Resource logical ID -> actions with ``prefix`` the function's role allows on it."""
    result: dict[str, set[str]] = {}
    for statement in role_statements(template_json, function_id):
        actions = {a for a in as_list(statement["Action"]) if a.startswith(prefix)}
        if statement["Effect"] != "Allow" or not actions:
            continue
        for resource_id in referenced_ids(statement["Resource"]):
            result.setdefault(resource_id, set()).update(actions)
    return result


def test_no_wildcard_actions_or_resources(template_json: dict) -> None:
    statements = list(identity_statements(template_json))
    assert len(statements) > 20
    for key, statement in statements:
        for action in as_list(statement["Action"]):
            assert action != "*", key
            assert not SERVICE_WILDCARD.match(action), f"{key}: {action}"
        # One documented exception: ecr:GetAuthorizationToken (the finalize task pulling its
        # image) takes no resource; the other Resource '*' grants (network interfaces of VPC
        # functions, log groups) come from the AWS managed policies.
        if "*" in as_list(statement.get("Resource", [])):
            assert as_list(statement["Action"]) == ["ecr:GetAuthorizationToken"], key
        assert statement.get("NotAction") is None and statement.get("NotResource") is None


def test_resource_policies_allow_no_service_wildcards(template_json: dict) -> None:
    statements = list(resource_policy_statements(template_json))
    assert statements
    for key, statement in statements:
        if statement["Effect"] != "Allow":
            continue  # e.g. the deny-non-TLS statements use s3:* / sqs:* on purpose
        for action in as_list(statement["Action"]):
            assert action != "*" and not SERVICE_WILDCARD.match(action), f"{key}: {action}"


def test_only_lambda_managed_policies(template_json: dict) -> None:
    for key, role in resources_of(template_json, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            name = str(arn).rsplit("/", 1)[-1].rstrip("']}\"")
            assert name in ALLOWED_MANAGED_POLICIES, f"{key}: {arn}"


def test_s3_access_per_function(template_json: dict, stack: StacubeStack) -> None:
    data = logical_id(stack.storage.data_bucket)
    outputs = logical_id(stack.storage.outputs_bucket)
    functions = {**stack.service_functions, "db-bootstrap": stack.bootstrap.function}

    def s3(name: str) -> dict[str, set[str]]:
        return access(template_json, logical_id(functions[name]), "s3:")

    worker = s3("worker")
    assert set(worker) == {data, outputs}
    assert not worker[data] & S3_WRITE and "s3:GetObject*" in worker[data]
    assert S3_WRITE <= worker[outputs]
    ingest = s3("ingest")
    assert set(ingest) == {data} and not ingest[data] & S3_WRITE
    raster = s3("raster-api")
    assert set(raster) == {data, outputs}
    assert not raster[data] & S3_WRITE and raster[outputs] & S3_WRITE == {"s3:PutObject", "s3:Abort*"}
    # it writes its tile store only: objects under tiles/ of the outputs bucket
    puts = [st["Resource"] for st in role_statements(template_json, logical_id(functions["raster-api"]))
            if "s3:PutObject" in as_list(st["Action"])]
    assert len(puts) == 1 and json.dumps(puts[0]).endswith('"/tiles/*"]]}'), puts
    for name in ("finalize", "planner", "reaper"):  # the job's documents, cube, COGs, report
        written = s3(name)
        assert set(written) == {outputs} and S3_WRITE <= written[outputs], name
    jobs = s3("jobs-api")  # presigns the download links: reads the outputs, writes nothing
    assert set(jobs) == {outputs} and "s3:GetObject*" in jobs[outputs] and not jobs[outputs] & S3_WRITE
    for name in ("stac-api", "db-bootstrap"):
        assert s3(name) == {}, name


def test_secret_access_per_function(template_json: dict, stack: StacubeStack) -> None:
    app_secret = logical_id(stack.database.app_secret)
    admin_attachment = logical_id(stack.database.instance.secret.node.default_child)
    for name, function in stack.service_functions.items():
        secrets = access(template_json, logical_id(function), "secretsmanager:")
        read = {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
        assert secrets == {app_secret: read}, name
    bootstrap = access(template_json, logical_id(stack.bootstrap.function), "secretsmanager:")
    assert set(bootstrap) == {app_secret, admin_attachment}


def consumers_of(stack: StacubeStack) -> dict[str, Any]:
    """Queue consumers by function name."""
    return {
        "ingest": stack.ingest,
        "planner": stack.planner,
        "worker": stack.worker,
        "finalize": stack.finalize,
    }


def test_queue_send_only_where_wired(template_json: dict, stack: StacubeStack) -> None:
    consumers = consumers_of(stack)
    expected = {
        "jobs-api": {logical_id(consumers["planner"].queue)},
        "planner": {logical_id(consumers["worker"].queue)},
        "worker": {logical_id(consumers["finalize"].queue), logical_id(consumers["worker"].queue)},
        "reaper": {logical_id(consumers[n].queue) for n in ("planner", "worker", "finalize")},
    }
    functions = {**stack.service_functions, "db-bootstrap": stack.bootstrap.function}
    for name, function in functions.items():
        sqs = access(template_json, logical_id(function), "sqs:")
        sends = {queue for queue, actions in sqs.items() if "sqs:SendMessage" in actions}
        assert sends == expected.get(name, set()), name


def test_queue_consume_only_own_queue(template_json: dict, stack: StacubeStack) -> None:
    consumers = consumers_of(stack)
    receivers = set()
    for name, consumer in consumers.items():
        sqs = access(template_json, logical_id(consumer.function), "sqs:")
        receives = {q for q, actions in sqs.items() if "sqs:ReceiveMessage" in actions}
        assert receives == {logical_id(consumer.queue)}, name
        receivers.add(name)
    for name in ("stac-api", "raster-api", "jobs-api"):
        sqs = access(template_json, logical_id(stack.service_functions[name]), "sqs:")
        assert not any("sqs:ReceiveMessage" in a for a in sqs.values()), name
    assert receivers == set(consumers)
