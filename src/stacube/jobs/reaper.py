"""Healing and failing queue-driven jobs that stopped moving (the ``reaper`` function).

Two entry points:

* :func:`reap`, on a schedule: finishes what a dead worker left undone once its lease ran out
  (a preparation, the messages of a stage: :func:`stacube.jobs.queue.heal`), sends the plan
  message again for a job no planner took, and fails with the reason every job still running
  ``settings.job_max_age`` seconds after it started (its messages expired from the queues, or
  its tiles were throttled for that long);
* :func:`dead_letter`, for each message of the ``plan``, ``tile`` and ``finalize`` dead-letter
  queues: a message that was received three times without succeeding fails its job with the
  reason (the tile's last recorded error, else: no attempt finished, i.e. the function timed
  out, ran out of memory or was throttled), unless it is stale (an earlier run, a finished job,
  a tile done by another delivery).

A job it fails is counted in ``stacube/JobsFailed`` like any other (the failed-jobs alarm).
"""

from __future__ import annotations

from stacube.errors import NotFound, StacubeError
from stacube.jobs import queue
from stacube.jobs.state import JobStore
from stacube.settings import Settings

#: What an attempt that recorded no error most likely met.
SILENT = "no attempt finished: the function timed out, ran out of memory or was throttled"


def reap(settings: Settings) -> list[str]:
    """One pass over the active jobs (see the module docstring); returns what was done."""
    store = JobStore(settings)
    done: list[str] = []
    hours = settings.job_max_age / 3600
    for job in store.overdue(settings.job_max_age):
        reason = (f"did not finish within {hours:g} h of starting (stage {job['stage'] or 'planning'}, "
                  f"{job['tiles_done']}/{job['tiles_total']} tiles done): its messages expired or "
                  "were throttled for that long")
        if queue.fail_job(settings, job["id"], reason, run=job["run"]):
            done.append(f"failed {job['id']}: {reason}")
    for job in store.lapsed(settings.stage_lease):
        try:
            if job["state"] == "queued":
                store.touch(job["id"])
                queue.send_messages(settings.plan_queue_url, [queue.JobMessage(job["id"], job["run"]).body()],
                                    what="the plan message")
                done.append(f"sent the plan message of {job['id']} again")
                continue
            outcome = queue.heal(settings, job)
            if outcome:
                done.append(f"{job['id']}{outcome}")
        except StacubeError as exc:  # the next pass tries again
            done.append(f"could not heal {job['id']}: {exc.message}")
    return done


def dead_letter(settings: Settings, kind: str, body: str, receives: int) -> str:
    """Fail the job of a dead message of the ``kind`` queue (``plan``, ``tile``, ``finalize``)
    with the reason, unless the message is stale.

    Returns:
        What was done, for the log.

    Raises:
        BadMessage: the body is not a message of that queue (it stays dead).
    """
    if kind == "tile":
        message = queue.parse_tile_message(body)
        what = f"tile {message.stage}/{message.tile}"
    else:
        message = queue.parse_job_message(body)
        what = "planning" if kind == "plan" else "finalizing"
    store = JobStore(settings)
    try:
        job = store.get(message.job_id, full=False)
    except NotFound:
        return f"ignored: unknown job {message.job_id}"
    if job["run"] != message.run or job["state"] not in ("queued", "running"):
        return f"ignored: job {message.job_id} run {job['run']} is {job['state']}"
    error = None
    if kind == "tile":
        state, error = store.tile_error(message.job_id, message.stage, message.tile)
        if state in (None, "done"):
            return f"ignored: {what} of job {message.job_id} is {state or 'unknown'}"
    reason = f"{what} failed {receives} deliveries: {error or SILENT}"
    if queue.fail_job(settings, message.job_id, reason, run=message.run):
        return f"failed job {message.job_id}: {reason}"
    return f"ignored: job {message.job_id} had ended"
