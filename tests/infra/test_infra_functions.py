"""Functions of the default stage: sizes, packaging, triggers and environment."""

from __future__ import annotations

from typing import Any

import pytest
from infra_helpers import STAGE, logical_id, resources_of
from stacube_infra.stack import StacubeStack

# name -> (memory MB, timeout s)
SIZES = {
    "stac-api": (1024, 30),
    "raster-api": (2048, 30),
    "jobs-api": (1024, 30),
    "ingest": (1536, 300),
    "planner": (3072, 900),
    "worker": (10240, 900),
    "finalize": (3072, 900),
    "reaper": (2048, 900),
    "db-bootstrap": (512, 300),
}
# Allowed ranges per function: name -> (min MB, max MB, timeout s)
LIMITS = {
    "stac-api": (1024, 2048, 30),
    "raster-api": (1024, 2048, 30),
    "jobs-api": (1024, 2048, 30),
    "ingest": (1024, 2048, 300),
    "planner": (2048, 4096, 900),
    "worker": (4096, 10240, 900),
    "finalize": (2048, 4096, 900),
    "reaper": (1024, 2048, 900),
    "db-bootstrap": (512, 512, 300),
}
# consumer -> (queue name, batch size)
TRIGGERS = {
    "ingest": ("ingest", 100),
    "planner": ("plan", 1),
    "worker": ("tile", 1),
    "finalize": ("finalize", 1),
}
GDAL = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "536870912",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF,.jp2,.JP2,.vrt,.json",
    "GDAL_CACHEMAX": "512",
}


def env(functions: dict[str, Any], name: str) -> dict[str, Any]:
    """Environment variables of one function."""
    return functions[name]["Environment"]["Variables"]


@pytest.mark.parametrize("name", sorted(SIZES))
def test_memory_and_timeout(functions: dict[str, Any], name: str) -> None:
    memory, timeout = SIZES[name]
    low, high, limit = LIMITS[name]
    assert functions[name]["MemorySize"] == memory
    assert functions[name]["Timeout"] == timeout
    assert low <= memory <= high and timeout == limit


def test_packaging_runtime_and_architecture(functions: dict[str, Any]) -> None:
    for name in ("stac-api", "db-bootstrap"):
        props = functions[name]
        assert props["Runtime"] == "python3.12"
        assert props["Handler"] == f"lambdas.{name.replace('-', '_')}.handler.handler"
        assert "S3Key" in props["Code"]
    assert functions["stac-api"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert "SnapStart" not in functions["db-bootstrap"]
    for name in ("raster-api", "jobs-api", "ingest", "planner", "worker", "finalize", "reaper"):
        assert functions[name]["PackageType"] == "Image"
        assert "ImageUri" in functions[name]["Code"]
    assert "ImageConfig" not in functions["raster-api"]  # the raster image's own CMD
    for name in ("jobs-api", "ingest", "planner", "worker", "finalize", "reaper"):
        module = name.replace("-", "_")
        assert functions[name]["ImageConfig"]["Command"] == [f"lambdas.{module}.handler.handler"]
    assert {tuple(p["Architectures"]) for p in functions.values()} == {("arm64",)}


def test_worker_image_shared(functions: dict[str, Any]) -> None:
    worker_uris = {
        str(functions[name]["Code"]["ImageUri"])
        for name in ("jobs-api", "ingest", "planner", "worker", "finalize", "reaper")
    }
    assert len(worker_uris) == 1


def test_functions_in_isolated_subnets(functions: dict[str, Any], stack: StacubeStack) -> None:
    lambda_sg = {"Fn::GetAtt": [logical_id(stack.network.lambda_security_group), "GroupId"]}
    app_subnets = [
        {"Ref": logical_id(subnet)}
        for subnet in stack.network.vpc.select_subnets(subnet_group_name="app").subnets
    ]
    assert len(app_subnets) == 2
    for name, props in functions.items():
        assert props["VpcConfig"]["SecurityGroupIds"] == [lambda_sg], name
        assert props["VpcConfig"]["SubnetIds"] == app_subnets, name


def test_event_sources(template_json: dict, stack: StacubeStack) -> None:
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in resources_of(template_json, "AWS::Lambda::EventSourceMapping").values()
    }
    consumers = {
        "ingest": stack.ingest,
        "planner": stack.planner,
        "worker": stack.worker,
        "finalize": stack.finalize,
    }
    every = [m["Properties"] for m in resources_of(template_json, "AWS::Lambda::EventSourceMapping").values()]
    reaper = [m for m in every if m["FunctionName"]["Ref"] == logical_id(stack.reaper)]
    assert set(mappings) == {logical_id(c.function) for c in consumers.values()} | {logical_id(stack.reaper)}
    # the reaper consumes the dead letters of plan, tile and finalize (ingest's wait to be redriven)
    assert sorted(m["EventSourceArn"]["Fn::GetAtt"][0] for m in reaper) == sorted(
        logical_id(c.work_queue.dead_letter_queue) for c in (stack.planner, stack.worker, stack.finalize))
    for name, consumer in consumers.items():
        queue_name, batch_size = TRIGGERS[name]
        mapping = mappings[logical_id(consumer.function)]
        assert mapping["EventSourceArn"] == {"Fn::GetAtt": [logical_id(consumer.queue), "Arn"]}
        assert mapping["BatchSize"] == batch_size
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        queue = template_json["Resources"][logical_id(consumer.queue)]["Properties"]
        assert queue["QueueName"] == f"stacube-{STAGE}-{queue_name}"
    worker_mapping = mappings[logical_id(stack.worker.function)]
    assert worker_mapping["ScalingConfig"] == {"MaximumConcurrency": 100}
    ingest = mappings[logical_id(stack.ingest.function)]  # eoapi-cdk's loader: batches over a minute
    assert ingest["MaximumBatchingWindowInSeconds"] == 60 and ingest["ScalingConfig"] == {"MaximumConcurrency": 2}


def test_reserved_concurrency_and_aliases(functions: dict[str, Any], template_json: dict,
                                          stack: StacubeStack) -> None:
    reserved = {name: props.get("ReservedConcurrentExecutions") for name, props in functions.items()}
    assert reserved == {"stac-api": 50, "raster-api": 100, "worker": 100, "ingest": 2, "reaper": 2,
                        "jobs-api": None, "planner": None, "finalize": None, "db-bootstrap": None}
    aliases = {a["Properties"]["FunctionName"]["Ref"]: a["Properties"]
               for a in resources_of(template_json, "AWS::Lambda::Alias").values()}
    assert set(aliases) == {logical_id(stack.stac_api), logical_id(stack.raster_api)}
    assert all(a["Name"] == "live" for a in aliases.values())
    assert "ProvisionedConcurrencyConfig" not in aliases[logical_id(stack.raster_api)]


def test_the_reaper_runs_every_five_minutes(template_json: dict, stack: StacubeStack) -> None:
    rules = list(resources_of(template_json, "AWS::Events::Rule").values())
    assert [r["Properties"]["ScheduleExpression"] for r in rules] == ["rate(5 minutes)"]
    assert rules[0]["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [logical_id(stack.reaper), "Arn"]}


def test_visibility_timeout_at_least_six_times_consumer_timeout(
    template_json: dict, stack: StacubeStack
) -> None:
    for consumer in (stack.ingest, stack.planner, stack.worker, stack.finalize):
        queue = template_json["Resources"][logical_id(consumer.queue)]["Properties"]
        function = template_json["Resources"][logical_id(consumer.function)]["Properties"]
        assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]


def test_shared_environment(functions: dict[str, Any], stack: StacubeStack) -> None:
    app_secret = {"Ref": logical_id(stack.database.app_secret)}
    outputs = {"Ref": logical_id(stack.storage.outputs_bucket)}
    data = {"Ref": logical_id(stack.storage.data_bucket)}
    for name in set(functions) - {"db-bootstrap"}:  # the bootstrap reaches the instance as its admin
        variables = env(functions, name)
        assert variables["STACUBE_DATABASE_SECRET_ARN"] == app_secret, name
        assert variables["STACUBE_DB_POOL_SIZE"] == "1"
        assert variables["STACUBE_DATA_BUCKET"] == data
        assert variables["STACUBE_OUTPUT_BUCKET"] == outputs
        assert variables["STACUBE_OUTPUT"] == {"Fn::Join": ["", ["s3://", outputs, "/outputs"]]}
        assert variables["STACUBE_TMP_PREFIX"] == "tmp/"
        assert variables["STACUBE_INGEST_PREFIX"] == "ingest/"
        assert variables["STACUBE_STAGE"] == STAGE
        # through the RDS Proxy, as a transaction pooler
        assert variables["STACUBE_DB_POOL_MODE"] == "transaction"
        assert variables["STACUBE_DATABASE_HOST"] == {"Fn::GetAtt": [logical_id(stack.pooler.proxy), "Endpoint"]}
        assert variables["STACUBE_DATABASE_PORT"] == "5432"


def test_queue_urls_only_where_sent(functions: dict[str, Any], stack: StacubeStack) -> None:
    expected = {
        "jobs-api": {"STACUBE_PLAN_QUEUE_URL": stack.planner.queue},
        "planner": {"STACUBE_TILE_QUEUE_URL": stack.worker.queue},
        "worker": {"STACUBE_FINALIZE_QUEUE_URL": stack.finalize.queue,
                   "STACUBE_TILE_QUEUE_URL": stack.worker.queue},
        "reaper": {"STACUBE_PLAN_QUEUE_URL": stack.planner.queue, "STACUBE_TILE_QUEUE_URL": stack.worker.queue,
                   "STACUBE_FINALIZE_QUEUE_URL": stack.finalize.queue},
    }
    for name in functions:
        queue_vars = {k: v for k, v in env(functions, name).items() if k.endswith("_QUEUE_URL")}
        wanted = {k: {"Ref": logical_id(q)} for k, q in expected.get(name, {}).items()}
        assert queue_vars == wanted, name


def test_root_paths(functions: dict[str, Any]) -> None:
    roots = {name: env(functions, name).get("STACUBE_ROOT_PATH") for name in functions}
    assert roots == {
        "stac-api": "/stac",
        "raster-api": "/raster",
        "jobs-api": "/jobs",
        "ingest": None,
        "planner": None,
        "worker": None,
        "finalize": None,
        "reaper": None,
        "db-bootstrap": None,
    }


def test_only_the_raster_api_has_a_tile_store(functions: dict[str, Any], stack: StacubeStack) -> None:
    outputs = {"Ref": logical_id(stack.storage.outputs_bucket)}
    stores = {name: env(functions, name).get("STACUBE_TILE_STORE") for name in functions}
    assert stores.pop("raster-api") == {"Fn::Join": ["", ["s3://", outputs, "/tiles"]]}
    assert set(stores.values()) == {None}


def test_gdal_settings(functions: dict[str, Any]) -> None:
    for name in ("raster-api", "worker", "ingest", "finalize", "reaper"):
        variables = env(functions, name)
        assert {k: variables.get(k) for k in GDAL} == GDAL, name
        assert "AWS_REQUEST_PAYER" not in variables
    for name in ("stac-api", "jobs-api", "planner", "db-bootstrap"):
        assert not set(GDAL) & set(env(functions, name)), name


def test_log_groups(template_json: dict) -> None:
    names = {
        g["Properties"].get("LogGroupName")
        for g in resources_of(template_json, "AWS::Logs::LogGroup").values()
    }
    for name in SIZES:
        assert f"/aws/lambda/stacube-{STAGE}-{name}" in names
    assert f"/aws/http-api/stacube-{STAGE}" in names


def test_base_images_pinned_by_digest() -> None:
    import re

    from infra_helpers import REPO_ROOT

    for dockerfile in ("lambdas/worker/Dockerfile", "lambdas/raster_api/Dockerfile"):
        bases = [line for line in (REPO_ROOT / dockerfile).read_text().splitlines() if line.startswith("FROM ")]
        assert bases and all(re.fullmatch(r"FROM public\.ecr\.aws/lambda/python:3\.1[2-9]@sha256:[0-9a-f]{64}", b)
                             for b in bases), dockerfile
