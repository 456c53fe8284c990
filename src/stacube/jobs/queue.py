"""Compositing jobs driven by SQS queues: the fan-out used on AWS Lambda.

Message bodies (JSON):

* plan queue (``STACUBE_PLAN_QUEUE_URL``): ``{"job_id": str, "run": int}``;
* tile queue (``STACUBE_TILE_QUEUE_URL``): ``{"job_id": str, "run": int, "stage": "scenes" |
  "composite", "tile": "<row>_<col>"}``;
* finalize queue (``STACUBE_FINALIZE_QUEUE_URL``): ``{"job_id": str, "run": int}``.

``run`` is the job's run counter (``stacube.jobs``): a message of an earlier run of a resubmitted
job is ignored.

The steps follow the stage machine of :mod:`stacube.jobs.stages`, as
:func:`stacube.jobs.runner.run_job` does:

1. :class:`QueueLauncher` (``POST /jobs``) sends the plan message;
2. :func:`plan_job` plans the job (:func:`tasks.start`) and sends one tile message per ``scenes``
   tile (a job without a scene pass, :func:`tasks.skip_scene_pass`, gets its ``composite`` tile
   messages at once);
3. :func:`run_tile` runs one tile (:func:`tasks.execute_tile`, the function the local executors
   use). Whoever finds a stage without pending tiles moves the job on with
   :func:`tasks.finish_stage` (exactly one caller does): after ``scenes`` it sends the composite
   tile messages; after ``composite`` the finalize message;
4. :func:`finalize_job` claims the job (``finalize`` -> ``finalizing``) and runs
   :func:`tasks.finalize` (COGs, report, commit, STAC Items), with the ``on_register`` callback
   its caller gives (the finalize function claims the output for the job's workspace).

Re-delivery is harmless: a tile already done is not run again, tile writes are idempotent (a tile
rewrites only its own Zarr chunks), stage moves are guarded, items are upserted. A message
delivered again after its previous attempt died (``attempt > 1``: the queues' visibility timeout
is six times the function timeout, so that attempt is over) finishes the step that attempt left
half done. Errors: bad parameters, no data and the like fail the job at once
(:data:`stacube.jobs.stages.PERMANENT`; a cancelled job only stops); other errors are raised so
SQS retries the message, and on its last attempt (:data:`stacube.jobs.stages.MAX_ATTEMPTS`) the
job fails before the message goes to the dead-letter queue. A job that
fails here is counted in the CloudWatch metric ``stacube/JobsFailed`` (embedded metric format log
line, dimension ``Stage``).
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from stacube.algo.load import Gate
from stacube.db.connection import connect
from stacube.errors import InvalidInput, NotFound, StacubeError
from stacube.jobs import tasks
from stacube.jobs.stages import MAX_ATTEMPTS, TILE_STAGES, JobCancelled, Stage, is_permanent
from stacube.jobs.state import JobStore
from stacube.settings import Settings
#: Namespace and name of the failed-jobs metric (see ``infra/stacube_infra/alarms.py``).
METRIC_NAMESPACE = "stacube"
METRIC_JOBS_FAILED = "JobsFailed"

_TILE = re.compile(r"^\d+_\d+$")
_SQS_BATCH = 10


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
    """Body of tile messages."""

    job_id: str
    run: int
    stage: str
    tile: str

    def body(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


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
    return TileMessage(job_id, run, stage, tile)


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

    sent = 0
    for start in range(0, len(bodies), _SQS_BATCH):
        chunk = bodies[start:start + _SQS_BATCH]
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
        try:
            answer = _sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            raise QueueUnavailable(f"cannot send {what} to {queue_url}: {exc}") from exc
        failed = answer.get("Failed") or []
        if failed:
            raise QueueUnavailable(f"cannot send {what} to {queue_url}: {failed[0].get('Message')}")
        sent += len(chunk)
    return sent


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
            _fail(self.settings, job_id, exc.message)
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


def _fail(settings: Settings, job_id: str, reason: str, *, counted: bool = False) -> bool:
    """Mark an active job failed, drop its staging area and count it.

    Args:
        counted: the library already marked the job failed in this step (count it anyway).

    Returns:
        True when this call failed the job.
    """
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "UPDATE stacube.jobs SET state = 'failed', error = %s, finished = now(), updated = now() "
            "WHERE id = %s AND state IN ('queued', 'running') RETURNING id", (reason, job_id),
        ).fetchone()
    if row or counted:
        _discard(settings, job_id)
        emit_job_failed(settings, job_id, reason)
    return bool(row) or counted


def _discard(settings: Settings, job_id: str) -> None:
    try:
        tasks.discard_staging(settings, job_id)
    except Exception:  # noqa: BLE001 - the bucket's lifecycle rule expires what stays
        pass


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _active_job(settings: Settings, job_id: str, run: int) -> tuple[dict | None, str]:
    """The job's summary if the message is current, else ``(None, why it is skipped)``."""
    try:
        job = JobStore(settings).get(job_id, full=False)
    except NotFound:
        return None, f"skipped: unknown job {job_id}"
    if job["run"] != run:
        return None, f"skipped: message of run {run}, the job is at run {job['run']}"
    if job["state"] not in ("queued", "running"):
        return None, f"skipped: job {job_id} is {job['state']}"
    return job, ""


def _tile_messages(settings: Settings, job_id: str, run: int, stage: str) -> int:
    pending = JobStore(settings).pending_tiles(job_id, stage)
    bodies = [TileMessage(job_id, run, stage, t).body() for t in pending]
    return send_messages(settings.tile_queue_url, bodies, what=f"{stage} tile messages")


def _finalize_message(settings: Settings, job_id: str, run: int) -> None:
    send_messages(settings.finalize_queue_url, [JobMessage(job_id, run).body()],
                  what="the finalize message")


# -- the steps --------------------------------------------------------------------------------
def plan_job(settings: Settings, message: JobMessage, *, attempt: int = 1, gate: Gate | None = None) -> str:
    """Plan a job and send its ``scenes`` tile messages (``gate``: the read gate of the inputs,
    see :func:`stacube.jobs.tasks.start`).

    A job already planned is not planned again; its pending tiles are sent again only when an
    earlier attempt of this message may have died before sending them (``attempt > 1``).

    Returns:
        What was done, for the log.

    Raises:
        Exception: a transient error (database, queue); SQS retries the message. On the last
            attempt the job is failed first.
    """
    job, why = _active_job(settings, message.job_id, message.run)
    if job is None:
        return why
    if job["state"] == "running" and attempt == 1:
        return f"skipped: job {message.job_id} is already planned"
    try:
        plan = tasks.start(settings, message.job_id, gate=gate)
        tasks.skip_scene_pass(settings, message.job_id, plan)  # no scene pass: composite tiles at once
        stage = JobStore(settings).get(message.job_id, full=False)["stage"]
        if stage in TILE_STAGES:
            sent = _tile_messages(settings, message.job_id, message.run, stage)
            return f"planned {len(plan.tile_indices())} tiles, sent {sent} {stage} tile messages"
        if stage in (Stage.FINALIZE, Stage.FINALIZING):
            _finalize_message(settings, message.job_id, message.run)
            return "sent the finalize message"
        return f"job {message.job_id} is at stage {stage}"
    except Exception as exc:
        failed = is_permanent(exc)
        try:
            failed = failed or JobStore(settings).state(message.job_id) == "failed"
        except StacubeError:
            pass
        if failed:  # start() marked the job failed (bad parameters, no scene...)
            reason = exc.message if isinstance(exc, StacubeError) else _reason(exc)
            _fail(settings, message.job_id, reason, counted=True)
            return f"failed: {reason}"
        if attempt >= MAX_ATTEMPTS:
            _fail(settings, message.job_id, f"planning failed {attempt} times: {_reason(exc)}")
        raise


def run_tile(settings: Settings, message: TileMessage, *, attempt: int = 1) -> str:
    """Run one tile (unless it is done already), then move the job on if its stage is complete.

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
    state = _tile_state(settings, job_id, message.stage, message.tile)
    if state is None:
        return f"skipped: job {job_id} has no {message.stage} tile {message.tile}"
    try:
        if state == "done":
            outcome = f"tile {message.stage}/{message.tile} was already done"
        else:
            tasks.execute_tile(settings, job_id, message.stage, message.tile)
            outcome = f"tile {message.stage}/{message.tile} done"
        return outcome + _after_tile(settings, message, attempt)
    except JobCancelled as exc:
        _discard(settings, job_id)
        return f"skipped: {exc.message}"
    except StacubeError as exc:
        if not is_permanent(exc):
            raise
        _fail(settings, job_id, exc.message, counted=True)
        return f"failed: {exc.message}"
    except Exception as exc:
        if attempt >= MAX_ATTEMPTS:
            _fail(settings, job_id, f"tile {message.stage}/{message.tile} failed {attempt} times: "
                                    f"{_reason(exc)}")
        raise


def _tile_state(settings: Settings, job_id: str, stage: str, tile: str) -> str | None:
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "SELECT state FROM stacube.job_tiles WHERE job_id = %s AND stage = %s AND tile = %s",
            (job_id, stage, tile)).fetchone()
    return row[0] if row else None


def _after_tile(settings: Settings, message: TileMessage, attempt: int) -> str:
    """Move the job to its next stage when no tile of this one is pending (see module doc)."""
    store = JobStore(settings)
    job_id, run = message.job_id, message.run
    moved = tasks.finish_stage(settings, job_id, message.stage)
    if moved == Stage.COMPOSITE:
        used = len(store.get(job_id)["selection"]["used"])
        sent = _tile_messages(settings, job_id, run, Stage.COMPOSITE)
        return f"; last scenes tile: {used} scenes selected, sent {sent} composite tile messages"
    if moved == Stage.FINALIZE:
        _finalize_message(settings, job_id, run)
        return "; last composite tile: sent the finalize message"
    if attempt == 1 or store.pending_tiles(job_id, message.stage):
        return ""
    # a redelivered message: an earlier attempt may have died half way through the move
    stage = store.get(job_id, full=False)["stage"]
    if message.stage == Stage.SCENES and stage == Stage.PREPARING:
        if tasks.finish_stage(settings, job_id, Stage.PREPARING) == Stage.COMPOSITE:
            return f"; sent {_tile_messages(settings, job_id, run, Stage.COMPOSITE)} composite tile messages"
        return ""
    if message.stage == Stage.SCENES and stage == Stage.COMPOSITE:
        return f"; sent {_tile_messages(settings, job_id, run, Stage.COMPOSITE)} composite tile messages"
    if message.stage == Stage.COMPOSITE and stage == Stage.FINALIZE:
        _finalize_message(settings, job_id, run)
        return "; sent the finalize message again"
    return ""


def finalize_job(settings: Settings, message: JobMessage, *, attempt: int = 1,
                 on_register: tasks.OnRegister | None = None) -> str:
    """Write the COGs and the report, commit the outputs and register the STAC Items.

    Args:
        on_register: see :func:`stacube.jobs.tasks.finalize`.

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
        if not (attempt > 1 and stage == Stage.FINALIZING):
            return f"skipped: job {job_id} is at stage {stage}"
    try:
        report = tasks.finalize(settings, job_id, on_register=on_register)
    except JobCancelled as exc:
        return f"skipped: {exc.message}"
    except StacubeError as exc:
        if not is_permanent(exc):
            raise
        _fail(settings, job_id, exc.message)
        return f"failed: {exc.message}"
    except Exception as exc:
        if attempt >= MAX_ATTEMPTS:
            _fail(settings, job_id, f"finalizing failed {attempt} times: {_reason(exc)}")
        raise
    return f"completed: {len(report['items'])} items in {report['collection']}"


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
