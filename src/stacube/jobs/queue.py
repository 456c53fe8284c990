"""Compositing jobs driven by SQS queues: the fan-out used on AWS Lambda.

Message bodies (JSON):

* plan queue (``STACUBE_PLAN_QUEUE_URL``): ``{"job_id": str, "run": int}``;
* tile queue (``STACUBE_TILE_QUEUE_URL``): ``{"job_id": str, "run": int, "stage": "scenes" |
  "composite" | "cogs", "tile": "<row>_<col>", "plan": uri, "selection": uri}``: what the tile
  needs, so a worker reads the run's plan (and scene selection) documents once per process and
  the database only for the tile's own state;
* finalize queue (``STACUBE_FINALIZE_QUEUE_URL``): ``{"job_id": str, "run": int}``.

``run`` is the job's run counter (``stacube.jobs``): a message of an earlier run of a resubmitted
job is ignored.

The steps follow the stage machine of :mod:`stacube.jobs.stages`, as
:func:`stacube.jobs.runner.run_job` does:

1. :class:`QueueLauncher` (``POST /jobs``) sends the plan message;
2. :func:`plan_job` claims the planning, plans the job (:func:`tasks.start`) and sends one tile
   message per ``scenes`` tile (a job without a scene pass,
   :func:`tasks.skip_scene_pass`, gets its ``composite`` tile messages at once);
3. :func:`run_tile` runs one tile (:func:`tasks.execute_tile`, the function the local executors
   use), which records it and counts it in one statement. The worker whose tile completes its
   stage moves the job on (:func:`tasks.finish_stage`, exactly one caller does) and sends the
   next stage's messages: the composite tiles, the COGs of a large job (``cogs``), or the
   finalize message;
4. :func:`finalize_job` claims the job (``finalize`` -> ``finalizing``) and runs
   :func:`tasks.finalize` (COGs, report, commit, STAC Items), with the ``on_register`` callback
   its caller gives (the finalize function claims the output for the job's workspace); a job
   whose COGs are too large for a function is handed to the container task
   (:func:`finalize_mode`).

Messages are sent once: the mover holds the job's lease while it sends, then records the stage as
sent (``sent_stage``). A message delivered again (SQS delivers at least once; a redelivery after
a crash) finds its tile done and changes nothing; if it finds a stage whose sender's lease ran
out before the messages were recorded as sent, it takes over and sends what is still pending
(:func:`heal`, which the reaper, :mod:`stacube.jobs.reaper`, also runs on a schedule). Tile writes
are idempotent (a tile rewrites only its own Zarr chunks), items are upserted. Errors: bad
parameters, no data and the like fail the job at once (:data:`stacube.jobs.stages.PERMANENT`;
a cancelled job only stops); other errors are raised so SQS retries the message, and on its last
attempt (:data:`stacube.jobs.stages.MAX_ATTEMPTS`) the job fails before the message goes to the
dead-letter queue, whose consumer fails the job with the reason when a worker never came back
(timeout, memory, throttling). A job that fails here is counted in the CloudWatch metric
``stacube/JobsFailed`` (embedded metric format log line, dimension ``Stage``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from stacube.algo.load import Gate
from stacube.errors import InvalidInput, NotFound, StacubeError
from stacube.jobs import tasks
from stacube.jobs.stages import MAX_ATTEMPTS, TILE_STAGES, JobCancelled, Stage, is_permanent
from stacube.jobs.state import JobStore, tile_key
from stacube.settings import Settings
#: Namespace and name of the failed-jobs metric (see ``infra/stacube_infra/alarms.py``).
METRIC_NAMESPACE = "stacube"
METRIC_JOBS_FAILED = "JobsFailed"

_TILE = re.compile(r"^\d+_\d+$")
_SQS_BATCH = 10
_SEND_THREADS = 8


class QueueUnavailable(StacubeError):
    """A queue could not be written to."""

    status_code = 503


class BadMessage(InvalidInput):
    """A message body that is not one of the formats above (retrying does not help)."""

    retry_in = 0


@dataclass(frozen=True)
class JobMessage:
    """Body of plan and finalize messages."""

    job_id: str
    run: int

    def body(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class TileMessage:
    """Body of tile messages (``plan`` and ``selection``: the run's document URIs)."""

    job_id: str
    run: int
    stage: str
    tile: str
    plan: str | None = None
    selection: str | None = None

    def body(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))


def _load(body: str | dict) -> dict:
    if isinstance(body, dict):
        return body
    try:
        doc = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise BadMessage(f"message is not JSON: {str(body)[:200]!r}") from exc
    if not isinstance(doc, dict):
        raise BadMessage(f"message is not a JSON object: {str(body)[:200]!r}")
    return doc


def _job_fields(doc: dict) -> tuple[str, int]:
    job_id, run = doc.get("job_id"), doc.get("run", 1)
    if not isinstance(job_id, str) or not job_id:
        raise BadMessage(f"message without a job_id: {json.dumps(doc)[:200]}")
    if not isinstance(run, int) or isinstance(run, bool) or run < 1:
        raise BadMessage(f"message with a bad run {run!r}")
    return job_id, run


def parse_job_message(body: str | dict) -> JobMessage:
    """A plan or finalize message.

    Raises:
        BadMessage: not ``{"job_id": str, "run": int}``.
    """
    return JobMessage(*_job_fields(_load(body)))


def parse_tile_message(body: str | dict) -> TileMessage:
    """A tile message.

    Raises:
        BadMessage: missing or malformed ``job_id``, ``run``, ``stage`` or ``tile``.
    """
    doc = _load(body)
    job_id, run = _job_fields(doc)
    stage, tile = doc.get("stage"), doc.get("tile")
    if stage not in TILE_STAGES:
        raise BadMessage(f"tile message with unknown stage {stage!r}")
    if not isinstance(tile, str) or not _TILE.match(tile):
        raise BadMessage(f"tile message with a bad tile {tile!r}")
    uris = [doc.get(k) for k in ("plan", "selection")]
    if any(u is not None and not (isinstance(u, str) and u) for u in uris):
        raise BadMessage("tile message with a bad plan or selection URI")
    return TileMessage(job_id, run, stage, tile, *uris)


# -- sending ----------------------------------------------------------------------------------
_SQS = None


def _sqs():
    """A boto3 SQS client (one per process; honours ``AWS_ENDPOINT_URL``)."""
    global _SQS
    if _SQS is None:
        import boto3

        _SQS = boto3.client("sqs")
    return _SQS


def send_messages(queue_url: str | None, bodies: list[str], *, what: str = "messages") -> int:
    """Send message bodies to a queue, ten per request.

    Raises:
        QueueUnavailable: no queue configured, or SQS refused a message.
    """
    if not queue_url:
        raise QueueUnavailable(f"no queue configured for {what}")
    from botocore.exceptions import BotoCoreError, ClientError

    client = _sqs()

    def send(chunk: list[str]) -> int:
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
        try:
            answer = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            raise QueueUnavailable(f"cannot send {what} to {queue_url}: {exc}") from exc
        failed = answer.get("Failed") or []
        if failed:
            raise QueueUnavailable(f"cannot send {what} to {queue_url}: {failed[0].get('Message')}")
        return len(chunk)

    chunks = [bodies[i:i + _SQS_BATCH] for i in range(0, len(bodies), _SQS_BATCH)]
    if len(chunks) <= _SEND_THREADS:
        return sum(send(c) for c in chunks)
    with ThreadPoolExecutor(_SEND_THREADS) as pool:  # 10,000 tiles: 1,000 requests, 8 at a time
        return sum(pool.map(send, chunks))


class QueueLauncher:
    """Starts submitted jobs by sending their plan message (the jobs API's launcher on AWS).

    Args:
        settings: ``plan_queue_url`` (``STACUBE_PLAN_QUEUE_URL``) and the catalog.
    """

    def __init__(self, settings: Settings):
        self.settings = settings

    def launch(self, job_id: str) -> None:
        """Send ``{"job_id", "run"}`` to the plan queue.

        Raises:
            QueueUnavailable: the message could not be sent; the job is marked failed, so
                submitting it again starts it afresh.
        """
        run = JobStore(self.settings).get(job_id, full=False)["run"]
        try:
            send_messages(self.settings.plan_queue_url, [JobMessage(job_id, run).body()],
                          what="the plan message")
        except QueueUnavailable as exc:
            fail_job(self.settings, job_id, exc.message)
            raise


# -- job state helpers ------------------------------------------------------------------------
def emit_job_failed(settings: Settings, job_id: str, reason: str) -> None:
    """Count a failed job in ``stacube/JobsFailed`` (CloudWatch embedded metric format)."""
    doc = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Stage"]],
                "Metrics": [{"Name": METRIC_JOBS_FAILED, "Unit": "Count"}],
            }],
        },
        "Stage": settings.stage,
        METRIC_JOBS_FAILED: 1,
        "job_id": job_id,
        "reason": reason,
    }
    print(json.dumps(doc, default=str), file=sys.stdout, flush=True)


def fail_job(settings: Settings, job_id: str, reason: str, *, run: int | None = None,
             counted: bool = False) -> bool:
    """Mark an active job (of ``run``, when given) failed, drop its staging area and count it.

    Args:
        counted: the library may have marked the job failed in this step already (count it
            when it is failed; a job cancelled meanwhile is not counted).

    Returns:
        True when this call failed the job (or, with ``counted``, the job is failed).
    """
    store = JobStore(settings)
    failed = store.fail_active(job_id, reason, run=run)
    if failed or counted:
        _discard(settings, job_id)
    if not failed and counted:
        failed = store.state(job_id) == "failed"
    if failed:
        emit_job_failed(settings, job_id, reason)
    return failed


def _discard(settings: Settings, job_id: str) -> None:
    try:
        tasks.discard_staging(settings, job_id)
    except Exception:  # noqa: BLE001 - the bucket's lifecycle rule expires what stays
        pass


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _current(job: dict | None, job_id: str, run: int) -> str:
    """Why a message of ``run`` is skipped for ``job`` ("" when it is current)."""
    if job is None:
        return f"skipped: unknown job {job_id}"
    if job["run"] != run:
        return f"skipped: message of run {run}, the job is at run {job['run']}"
    if job["state"] not in ("queued", "running"):
        return f"skipped: job {job_id} is {job['state']}"
    return ""


def _active_job(settings: Settings, job_id: str, run: int) -> tuple[dict | None, str]:
    """The job's summary if the message is current, else ``(None, why it is skipped)``."""
    try:
        job = JobStore(settings).get(job_id, full=False)
    except NotFound:
        job = None
    why = _current(job, job_id, run)
    return (None, why) if why else (job, "")


# -- sending a stage's messages ---------------------------------------------------------------
def stage_units(settings: Settings, job: dict, stage: str) -> list[str]:
    """Every tile of a stage of ``job`` (from its plan; for ``cogs``, its COGs)."""
    plan = tasks.load_plan(settings, job["id"], job)
    if stage == Stage.COGS:
        return tasks.cog_units(plan, tasks.load_selection(settings, job["plan_uri"])["steps"])
    return [tile_key(t) for t in plan.tile_indices()]


def send_stage(settings: Settings, job: dict, stage: str, *, tiles: list[str] | None = None) -> int:
    """Send the messages of ``stage`` (the caller holds the job's lease) and record them sent.

    Args:
        tiles: the tiles to send (default: the stage's pending tiles, a listing).

    Returns:
        How many messages were sent.

    Raises:
        QueueUnavailable: a message could not be sent; the lease is released, so the next
            delivery (or the reaper) sends them.
    """
    store = JobStore(settings)
    job_id, run = job["id"], job["run"]
    try:
        if stage in TILE_STAGES:
            if tiles is None:
                tiles = store.pending_tiles(job_id, stage)
            plan_uri = job["plan_uri"]
            selection = tasks.selection_uri(plan_uri) if stage != Stage.SCENES else None
            bodies = [TileMessage(job_id, run, stage, t, plan_uri, selection).body() for t in tiles]
            sent = send_messages(settings.tile_queue_url, bodies, what=f"{stage} tile messages")
        elif stage == Stage.FINALIZE:
            sent = send_messages(settings.finalize_queue_url, [JobMessage(job_id, run).body()],
                                 what="the finalize message")
        else:
            raise ValueError(f"stage {stage!r} sends no message")
    except Exception:
        store.release(job_id)
        raise
    store.mark_sent(job_id, run, stage)
    return sent


def heal(settings: Settings, job: dict) -> str:
    """Finish what a dead holder of ``job``'s lease left undone (see the module docstring):
    prepare the composite, or send the stage's pending messages. Only one caller does, and only
    once the lease ran out.

    Returns:
        What was done, for the log ("" when nothing was needed or someone else holds it).
    """
    stage = job["stage"]
    if stage is None or job["sent_stage"] == stage or stage == Stage.FINALIZING:
        return ""
    store = JobStore(settings)
    if not store.claim(job["id"], job["run"], stage, settings.stage_lease):
        return ""
    job = store.get(job["id"], full=False)
    if stage == Stage.SCENES:
        plan = tasks.load_plan(settings, job["id"], job)
        if not tasks.scene_pass(plan):  # the planner died before moving the job on
            return _skip_scene_pass(settings, job["id"], plan)
    if stage == Stage.PREPARING:
        try:
            moved = tasks.finish_stage(settings, job["id"], Stage.PREPARING, claimed=True)
        except Exception:
            store.release(job["id"])
            raise
        if moved != Stage.COMPOSITE:
            return ""
        job = store.get(job["id"], full=False)
        return f"; took over the preparation, sent {send_stage(settings, job, moved)} composite tile messages"
    sent = send_stage(settings, job, stage)
    return f"; took over the {stage} stage, sent {sent} messages"


def _skip_scene_pass(settings: Settings, job_id: str, plan) -> str:
    """Move a job without a scene pass on to ``composite`` and send its composite tile
    messages (:func:`tasks.skip_scene_pass`); what was done, for the log."""
    store = JobStore(settings)
    try:
        moved = tasks.skip_scene_pass(settings, job_id, plan)
    except Exception:
        store.release(job_id)
        raise
    if moved != Stage.COMPOSITE:
        return ""
    return f", sent {send_stage(settings, store.get(job_id, full=False), moved)} composite tile messages"


def finalize_mode(settings: Settings, plan, steps: int) -> str:
    """How a job's COGs are assembled: ``inline`` (by the finalize function, in parallel),
    ``fan-out`` (one ``cogs`` tile per COG on the workers: from ``finalize_fanout`` COGs), or
    ``container`` (the finalize container task: a COG larger than ``finalize_max_cog_pixels``,
    beyond a function's memory and 15 minutes; used when ``finalize_task_definition`` is set)."""
    pixels = int(plan.geobox.shape.x * plan.geobox.shape.y)
    if pixels > settings.finalize_max_cog_pixels and settings.finalize_task_definition:
        return "container"
    if steps * len(plan.variables) >= settings.finalize_fanout and settings.tile_queue_url:
        return "fan-out"
    return "inline"


# -- the steps --------------------------------------------------------------------------------
def plan_job(settings: Settings, message: JobMessage, *, attempt: int = 1, gate: Gate | None = None) -> str:
    """Plan a job and send its ``scenes`` tile messages (``gate``: the read gate of the inputs,
    see :func:`stacube.jobs.tasks.start`).

    A job already planned is not planned again; its stage's messages are sent again only when
    the planner that planned it died before recording them sent (:func:`heal`).

    Returns:
        What was done, for the log.

    Raises:
        Exception: a transient error (database, queue); SQS retries the message. On the last
            attempt the job is failed first.
    """
    store = JobStore(settings)
    job, why = _active_job(settings, message.job_id, message.run)
    if job is None:
        return why
    if job["state"] == "running":
        return f"skipped: job {message.job_id} is already planned" + heal(settings, job)
    if not store.claim_planning(message.job_id, message.run, settings.stage_lease):
        return f"skipped: job {message.job_id} is being planned"
    try:
        plan = tasks.start(settings, message.job_id, gate=gate)
        tiles = [tile_key(t) for t in plan.tile_indices()]
        if not tasks.scene_pass(plan):  # the composite tiles count the scenes' pixels
            return f"planned {len(tiles)} tiles" + _skip_scene_pass(settings, message.job_id, plan)
        job = store.get(message.job_id, full=False)
        sent = send_stage(settings, job, Stage.SCENES, tiles=tiles)
        return f"planned {len(tiles)} tiles, sent {sent} scenes tile messages"
    except JobCancelled as exc:  # cancelled while it was planned (start() dropped the staging)
        return f"skipped: {exc.message}"
    except Exception as exc:
        failed = is_permanent(exc)
        try:
            failed = failed or store.state(message.job_id) == "failed"
        except StacubeError:
            pass
        if failed:  # start() marked the job failed (bad parameters, no scene...)
            reason = exc.message if isinstance(exc, StacubeError) else _reason(exc)
            fail_job(settings, message.job_id, reason, counted=True)
            return f"failed: {reason}"
        store.release(message.job_id)
        if attempt >= MAX_ATTEMPTS:
            fail_job(settings, message.job_id, f"planning failed {attempt} times: {_reason(exc)}")
        raise


def run_tile(settings: Settings, message: TileMessage, *, attempt: int = 1) -> str:
    """Run one tile (unless it is done already), then move the job on if its stage is complete.

    Database work per tile: one query for the job and the tile, one statement recording the
    tile and counting it; the worker that completes a stage also moves the job on.

    Returns:
        What was done, for the log.

    Raises:
        Exception: a transient error; SQS retries the message. On the last attempt the job
            is failed first.
    """
    job_id = message.job_id
    store = JobStore(settings)
    job = store.tile_context(job_id, message.stage, message.tile)
    why = _current(job, job_id, message.run)
    if why:
        return why
    label = f"tile {message.stage}/{message.tile}"
    if job["tile_state"] is None:
        return f"skipped: job {job_id} has no {message.stage} tile {message.tile}"
    if job["tile_state"] == "done":  # a duplicate, or a redelivery after the stage moved on
        return f"{label} was already done" + heal(settings, job)
    if job["stage"] != message.stage:
        return f"skipped: job {job_id} is at stage {job['stage']}"
    try:
        last = tasks.execute_tile(settings, job_id, message.stage, message.tile, job=job,
                                  plan_uri=message.plan, selection=message.selection)
        return f"{label} done" + (_move_on(settings, job, message.stage) if last else "")
    except JobCancelled as exc:
        _discard(settings, job_id)
        return f"skipped: {exc.message}"
    except StacubeError as exc:
        if not is_permanent(exc):
            if attempt >= MAX_ATTEMPTS:
                fail_job(settings, job_id, f"{label} failed {attempt} times: {exc.message}", run=message.run)
            raise
        fail_job(settings, job_id, exc.message, counted=True)
        return f"failed: {exc.message}"
    except Exception as exc:
        if attempt >= MAX_ATTEMPTS:
            fail_job(settings, job_id, f"{label} failed {attempt} times: {_reason(exc)}", run=message.run)
        raise


def _move_on(settings: Settings, job: dict, stage: str) -> str:
    """The caller's tile completed ``stage``: move the job on and send the next stage's messages."""
    fan_out = False
    if stage == Stage.COMPOSITE:
        plan = tasks.load_plan(settings, job["id"], job)
        steps = tasks.load_selection(settings, job["plan_uri"])["steps"]
        fan_out = finalize_mode(settings, plan, len(steps)) == "fan-out"
    moved = tasks.finish_stage(settings, job["id"], stage, fan_out_cogs=fan_out)
    if moved is None:
        return ""
    job = JobStore(settings).get(job["id"], full=False)
    if moved == Stage.FINALIZE:
        send_stage(settings, job, moved)
        return f"; last {stage} tile: sent the finalize message"
    sent = send_stage(settings, job, moved, tiles=stage_units(settings, job, moved))
    return f"; last {stage} tile: sent {sent} {moved} tile messages"


def finalize_job(settings: Settings, message: JobMessage, *, attempt: int = 1,
                 on_register: tasks.OnRegister | None = None, in_container: bool = False) -> str:
    """Write the COGs and the report, commit the outputs and register the STAC Items.

    Args:
        on_register: see :func:`stacube.jobs.tasks.finalize`.
        in_container: this runs in the finalize container task (it does the work whatever the
            job's size, with every CPU).

    Returns:
        What was done, for the log.

    Raises:
        Exception: a transient error; SQS retries the message. On the last attempt the job
            is failed first.
    """
    job_id = message.job_id
    job, why = _active_job(settings, job_id, message.run)
    if job is None:
        return why
    store = JobStore(settings)
    if not store.advance_stage(job_id, Stage.FINALIZE, Stage.FINALIZING):
        stage = store.get(job_id, full=False)["stage"]
        if not ((attempt > 1 or in_container) and stage == Stage.FINALIZING):
            return f"skipped: job {job_id} is at stage {stage}"
    try:
        if not in_container:
            plan = tasks.load_plan(settings, job_id, job)
            steps = tasks.load_selection(settings, job["plan_uri"])["steps"]
            if finalize_mode(settings, plan, len(steps)) == "container":
                return start_container_task(settings, message)
        report = tasks.finalize(settings, job_id, on_register=on_register, threads=os.cpu_count() or 1)
    except JobCancelled as exc:
        return f"skipped: {exc.message}"
    except StacubeError as exc:
        if not is_permanent(exc):
            if attempt >= MAX_ATTEMPTS or in_container:
                fail_job(settings, job_id, f"finalizing failed {attempt} times: {exc.message}")
            raise
        fail_job(settings, job_id, exc.message)
        return f"failed: {exc.message}"
    except Exception as exc:
        if attempt >= MAX_ATTEMPTS or in_container:
            fail_job(settings, job_id, f"finalizing failed {attempt} times: {_reason(exc)}")
        raise
    return f"completed: {len(report['items'])} items in {report['collection']}"


def start_container_task(settings: Settings, message: JobMessage) -> str:
    """Hand a job's finalize to the container task (ECS on Fargate, ``finalize_*`` settings):
    it runs ``python -m lambdas.finalize.task <message>`` in the worker image.

    Raises:
        QueueUnavailable: the task could not be started (SQS retries the message).
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    subnets = [s for s in (settings.finalize_subnets or "").split(",") if s]
    groups = [g for g in (settings.finalize_security_groups or "").split(",") if g]
    network = {"networkConfiguration": {"awsvpcConfiguration": {
        "subnets": subnets, "securityGroups": groups, "assignPublicIp": "DISABLED"}}} if subnets else {}
    try:
        answer = boto3.client("ecs").run_task(
            cluster=settings.finalize_cluster, taskDefinition=settings.finalize_task_definition,
            launchType="FARGATE", count=1, **network,
            overrides={"containerOverrides": [{"name": "finalize", "command": [message.body()]}]})
    except (BotoCoreError, ClientError) as exc:
        raise QueueUnavailable(f"cannot start the finalize task: {exc}") from exc
    if answer.get("failures"):
        raise QueueUnavailable(f"cannot start the finalize task: {answer['failures'][0].get('reason')}")
    arn = (answer.get("tasks") or [{}])[0].get("taskArn", "?")
    return f"handed to the finalize container task {arn}"


def handle(settings: Settings, kind: str, body: str | dict, attempt: int = 1,
           on_register: tasks.OnRegister | None = None) -> Any:
    """Dispatch one message body to its step (``plan``, ``tile`` or ``finalize``)."""
    if kind == "plan":
        return plan_job(settings, parse_job_message(body), attempt=attempt)
    if kind == "tile":
        return run_tile(settings, parse_tile_message(body), attempt=attempt)
    if kind == "finalize":
        return finalize_job(settings, parse_job_message(body), attempt=attempt, on_register=on_register)
    raise ValueError(f"unknown message kind {kind!r}")
