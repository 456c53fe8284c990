"""Every AWS call a function's code makes has a grant in the synthesized template.

moto does not enforce IAM, so a missing grant passes every local test and fails on AWS (a
presigned link answering 403, a plan document that cannot be written). This test reads each
handler's source for the library entry points it calls, maps those to the AWS actions they make
(on which bucket, queue, secret or task), adds what the function's environment implies (a queue
URL: it sends there; the database secret: it reads it; a task definition: it runs it) and checks
each against the function role's statements.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from infra_helpers import REPO_ROOT, functions_by_name, logical_id
from stacube_infra.stack import StacubeStack
from test_infra_iam import access

READ = ("s3:GetObject",)
WRITE = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket")
#: Library entry points -> the S3 calls they make: (actions, bucket).
ENTRY_POINTS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    # odc-stac reads the scenes; the cube, COGs and the run's documents are written and read
    "queue.run_tile": [(READ, "data"), (WRITE, "outputs")],
    # the plan document is written; a failed plan drops the run's staging area
    "queue.plan_job": [(WRITE, "outputs")],
    # COGs, report, commit (deletes earlier runs), the run's documents
    "queue.finalize_job": [(WRITE, "outputs")],
    # heals (prepares a composite: the cube, the selection) and drops failed runs
    "reaper.reap": [(WRITE, "outputs")],
    "reaper.dead_letter": [(WRITE, "outputs")],
    # presigned download links are signed with the function's credentials
    "create_jobs_app": [(READ, "outputs")],
    # tiles of scenes and of job outputs
    "create_raster_app": [(READ, "data"), (READ, "outputs")],
    # reads the dropped objects and describes COGs through /vsis3/
    "register(messages)": [(READ, "data")],
}
HANDLERS = {
    "worker": "worker",
    "planner": "planner",
    "finalize": "finalize",
    "reaper": "reaper",
    "jobs-api": "jobs_api",
    "raster-api": "raster_api",
    "ingest": "ingest",
    "stac-api": "stac_api",
}


def calls_of(name: str) -> list[tuple[tuple[str, ...], str]]:
    """The S3 calls of a function, from the entry points its handler's source names."""
    source = (REPO_ROOT / "lambdas" / HANDLERS[name] / "handler.py").read_text()
    if name == "finalize":
        source += (REPO_ROOT / "lambdas" / "finalize" / "task.py").read_text()
    return [call for entry, calls in ENTRY_POINTS.items() if entry in source for call in calls]


def allowed(granted: set[str], action: str) -> bool:
    """Whether an action is covered by the granted ones (CDK grants use ``s3:GetObject*``...)."""
    return any(fnmatch.fnmatchcase(action, g) for g in granted)


def test_every_handler_is_covered() -> None:
    handlers = {p.parent.name for p in (REPO_ROOT / "lambdas").glob("*/handler.py")}
    assert handlers == set(HANDLERS.values()) | {"db_bootstrap"}
    for name in ("worker", "planner", "finalize", "reaper", "jobs-api", "raster-api", "ingest"):
        assert calls_of(name), f"{name}: no known entry point in its handler"


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_the_s3_calls_of_each_function_are_granted(name: str, template_json: dict, stack: StacubeStack) -> None:
    buckets = {"data": logical_id(stack.storage.data_bucket), "outputs": logical_id(stack.storage.outputs_bucket)}
    function = logical_id(stack.service_functions[name])
    granted = access(template_json, function, "s3:")
    for actions, bucket in calls_of(name):
        for action in actions:
            assert allowed(granted.get(buckets[bucket], set()), action), f"{name}: {action} on {bucket}"


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_what_the_environment_names_is_granted(name: str, template_json: dict, stack: StacubeStack) -> None:
    function = logical_id(stack.service_functions[name])
    variables = functions_by_name(template_json)[name]["Environment"]["Variables"]
    sqs = access(template_json, function, "sqs:")
    for key, value in variables.items():
        if key.endswith("_QUEUE_URL"):  # it sends there
            assert "sqs:SendMessage" in sqs.get(value["Ref"], set()), f"{name}: {key}"
    secrets = access(template_json, function, "secretsmanager:")
    secret = variables["STACUBE_DATABASE_SECRET_ARN"]["Ref"]
    assert "secretsmanager:GetSecretValue" in secrets.get(secret, set()), name
    assert "STACUBE_FINALIZE_TASK_DEFINITION" not in variables  # finalize_task=false: no task


def test_finalize_may_start_the_task_and_the_task_do_what_finalize_does(variant_template, variant_stack) -> None:
    template_json = variant_template.to_json()
    stack = variant_stack
    task = stack.finalize_task.task_definition
    function = logical_id(stack.finalize.function)
    variables = functions_by_name(template_json)["finalize"]["Environment"]["Variables"]
    assert variables["STACUBE_FINALIZE_TASK_DEFINITION"] == {"Ref": logical_id(task)}
    assert "ecs:RunTask" in access(template_json, function, "ecs:").get(logical_id(task), set())
    passed = access(template_json, function, "iam:")
    for role in (task.task_role, task.execution_role):
        assert "iam:PassRole" in passed.get(logical_id(role), set())
    statements = [
        s for p in template_json["Resources"].values() if p["Type"] == "AWS::IAM::Policy"
        and {"Ref": logical_id(task.task_role)} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    text = str(statements)
    assert logical_id(stack.storage.outputs_bucket) in text and "s3:PutObject" in text
    assert "secretsmanager:GetSecretValue" in text
    assert "queue.finalize_job" in (REPO_ROOT / "lambdas" / "finalize" / "task.py").read_text()
