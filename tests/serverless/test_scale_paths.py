"""The queue-driven job's paths for size and for failure: COGs fanned out to the workers, the
finalize container task, the reaper (schedule and dead-letter queues), a stuck job resubmitted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lambdas.local_events import sqs_record
from serverless_support import load_handler
from stacube_testing import ROOT

SPEC = {"collections": ["sentinel-2-l1c-eolearn-sample"], "bbox": [14.5514, 45.8659, 14.5642, 45.875],
        "datetime": "2015-07-01/2015-09-30", "method": "median", "indices": ["NDVI"], "tile_size": 64}


@pytest.fixture(scope="module")
def collection(aws, handlers, app_settings):
    from stacube.catalog.pgstac import Catalog

    catalog = Catalog(app_settings)
    if SPEC["collections"][0] not in catalog.collection_ids():  # run without test_flow
        from stacube.catalog.register import add_datasets, add_product
        from stacube_testing import PRODUCTS, SAMPLES

        add_product(catalog, PRODUCTS / "sentinel-2-l1c-eolearn-sample.odc.yaml")
        add_datasets(catalog, [SAMPLES / "s2-l1c-slovenia-eolearn"])
    return SPEC["collections"][0]


def submit(settings, output_collection: str, **extra) -> str:
    from stacube.jobs.runner import submit as submit_job
    from stacube.jobs.spec import build_spec

    job, _ = submit_job(build_spec(**SPEC, output_collection=output_collection, **extra), settings)
    return job["id"]


def take(aws, queue: str) -> list[dict]:
    """Every message of a queue, deleted from it."""
    bodies = []
    while True:
        got = aws.sqs.receive_message(QueueUrl=aws.queues[queue], MaxNumberOfMessages=10).get("Messages")
        if not got:
            return bodies
        for m in got:
            bodies.append(json.loads(m["Body"]))
            aws.sqs.delete_message(QueueUrl=aws.queues[queue], ReceiptHandle=m["ReceiptHandle"])


def drive(aws, settings, job_id: str, *, until: str = "finalize") -> list[str]:
    """Plan the job and run its tile messages (from the queue) until the finalize message."""
    from stacube.db.connection import session
    from stacube.jobs import queue
    from stacube.jobs.state import JobStore

    run = JobStore(settings).get(job_id, full=False)["run"]
    outcomes = [queue.plan_job(settings, queue.JobMessage(job_id, run))]
    while True:
        tiles = take(aws, "tile")
        if not tiles:
            return outcomes
        for body in tiles:
            with session(settings):
                outcomes.append(queue.run_tile(settings, queue.parse_tile_message(body)))


def test_many_cogs_are_assembled_by_the_workers(aws, app_settings, collection):
    from stacube.jobs import queue
    from stacube.jobs.state import JobStore

    settings = app_settings.model_copy(update={
        "finalize_fanout": 2, "tile_queue_url": aws.queues["tile"], "finalize_queue_url": aws.queues["finalize"]})
    job_id = submit(settings, "slovenia-fanned-out")
    outcomes = drive(aws, settings, job_id)
    cogs = [o for o in outcomes if o.startswith("tile cogs/")]
    assert len(cogs) == 3  # NDVI, clear_count, valid_count of one period: one tile each
    assert any("sent 3 cogs tile messages" in o for o in outcomes)
    finals = take(aws, "finalize")
    assert finals == [{"job_id": job_id, "run": 1}]
    assert queue.finalize_job(settings, queue.JobMessage(job_id, 1)).startswith("completed")
    job = JobStore(settings).get(job_id)
    assert job["state"] == "completed" and len(job["report"]["outputs"]["cogs"]) == 1
    keys = {o["Key"] for o in aws.s3.list_objects_v2(Bucket="stacube-test-outputs", Prefix=f"outputs/{job_id}/")["Contents"]}
    label = job["report"]["steps"][0]["label"]
    assert {f"outputs/{job_id}/run-1/{label}/{v}.tif" for v in ("NDVI", "clear_count", "valid_count")} <= keys
    # a retried finalize after the commit registers again and changes nothing (the job as a
    # finalizer that died after the commit left it; a store update never reopens an ended job)
    store = JobStore(settings)
    store.run(lambda conn: conn.execute(
        "UPDATE stacube.jobs SET state = 'running', stage = 'finalizing' WHERE id = %s", (job_id,)))
    assert queue.finalize_job(settings, queue.JobMessage(job_id, 1), attempt=2).startswith("completed")
    assert {o["Key"] for o in aws.s3.list_objects_v2(Bucket="stacube-test-outputs",
                                                       Prefix=f"outputs/{job_id}/")["Contents"]} == keys


def test_a_job_too_large_for_a_function_is_finalized_by_the_container_task(aws, app_settings, collection):
    import boto3

    from stacube.jobs import queue
    from stacube.jobs.state import JobStore

    ecs = boto3.client("ecs")
    cluster = ecs.create_cluster(clusterName="stacube-test")["cluster"]["clusterArn"]
    task = ecs.register_task_definition(
        family="stacube-test-finalize", networkMode="bridge",
        cpu="1024", memory="4096", containerDefinitions=[{"name": "finalize", "image": "worker", "cpu": 1024, "memory": 4096}],
    )["taskDefinition"]["taskDefinitionArn"]
    settings = app_settings.model_copy(update={
        "finalize_max_cog_pixels": 100, "finalize_cluster": cluster, "finalize_task_definition": task,
        # (no subnets: moto's server cannot run awsvpc tasks; the stack sets them)
        "tile_queue_url": aws.queues["tile"], "finalize_queue_url": aws.queues["finalize"]})
    job_id = submit(settings, "slovenia-container")
    drive(aws, settings, job_id)
    message = take(aws, "finalize")[0]
    outcome = queue.finalize_job(settings, queue.parse_job_message(message))
    assert outcome.startswith("handed to the finalize container task arn:aws:ecs:")
    started = ecs.describe_tasks(cluster=cluster, tasks=ecs.list_tasks(cluster=cluster)["taskArns"])["tasks"]
    assert [t["overrides"]["containerOverrides"] for t in started] == [
        [{"name": "finalize", "command": [json.dumps(message, separators=(",", ":"))]}]]
    assert JobStore(settings).get(job_id, full=False)["stage"] == "finalizing"
    # what the task runs: the same step, in the worker image's Python
    env = {**os.environ, "STACUBE_TILE_QUEUE_URL": aws.queues["tile"]}
    done = subprocess.run([sys.executable, "-m", "lambdas.finalize.task", json.dumps(message)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    assert "finalize task: completed" in done.stdout
    assert JobStore(settings).get(job_id, full=False)["state"] == "completed"


def test_dead_letters_fail_their_job_with_the_reason(aws, app_settings, collection):
    from stacube.jobs import queue
    from stacube.jobs.state import JobStore

    reaper = load_handler("reaper", aws)
    settings = app_settings.model_copy(update={"tile_queue_url": aws.queues["tile"]})
    job_id = submit(settings, "slovenia-dead-letter", max_cloud=99)
    queue.plan_job(settings, queue.JobMessage(job_id, 1))
    tiles = take(aws, "tile")
    arn = "arn:aws:sqs:us-east-1:123456789012:stacube-test-tile-dlq"

    def dead(body):
        message = {"MessageId": f"d-{body['tile']}-{body['run']}", "ReceiptHandle": "r", "Body": json.dumps(body),
                   "Attributes": {"ApproximateReceiveCount": "1"}}
        return reaper({"Records": [sqs_record(message, arn)]}, None)

    assert dead({**tiles[0], "run": 7}) == {"batchItemFailures": []}  # stale: another run
    assert JobStore(settings).state(job_id) == "running"
    assert dead(tiles[1]) == {"batchItemFailures": []}
    job = JobStore(settings).get(job_id, full=False)
    assert job["state"] == "failed"
    assert job["error"] == (f"tile scenes/{tiles[1]['tile']} failed 3 deliveries: no attempt finished: "
                            "the function timed out, ran out of memory or was throttled")


def test_the_schedule_heals_lapsed_moves_and_fails_overdue_jobs(aws, app_settings, collection):
    from stacube.db.connection import connect
    from stacube.jobs import queue
    from stacube.jobs.state import JobStore

    reaper = load_handler("reaper", aws)
    settings = app_settings.model_copy(update={"tile_queue_url": aws.queues["tile"]})
    store = JobStore(settings)
    stuck = submit(settings, "slovenia-lapsed")
    queue.plan_job(settings, queue.JobMessage(stuck, 1))
    sent = take(aws, "tile")
    assert len(sent) == 4
    # the planner died after planning, before its messages were recorded as sent: the
    # schedule sends them again once its lease ran out
    with connect(settings, autocommit=True) as conn:
        conn.execute("UPDATE stacube.jobs SET sent_stage = NULL, lease_until = now() - interval '1 second' "
                     "WHERE id = %s", (stuck,))
    old = submit(settings, "slovenia-overdue", max_cloud=98)
    with connect(settings, autocommit=True) as conn:
        conn.execute("UPDATE stacube.jobs SET created = now() - interval '3 days' WHERE id = %s", (old,))
    answer = reaper({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, None)
    assert any(a.startswith(f"{stuck}; took over the composite stage, sent 4 messages") for a in answer["handled"]), answer
    assert store.get(stuck, full=False)["sent_stage"] == "composite"
    assert sorted(b["tile"] for b in take(aws, "tile")) == sorted(b["tile"] for b in sent)
    failed = store.get(old, full=False)
    assert failed["state"] == "failed" and failed["error"].startswith("did not finish within 48 h")
    # a stuck job submitted again starts afresh instead of returning the stuck run
    again, created = store.submit(stuck, store.get(stuck)["parameters"], stale_after=0)
    assert created and again["run"] == 2
