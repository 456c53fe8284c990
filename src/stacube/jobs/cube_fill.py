"""Filling a whole cube as a job of kind ``cube``: recorded in the job store like compositing
jobs (state ``queued -> running -> completed | failed | cancelled``), its progress counted in
fill units (one tile x one time chunk: ``tiles_total`` units, ``tiles_done`` of them in the
store, stage ``fill``), its error recorded on failure.

The fill is :func:`stacube.cubes.fill.fill_units` over every unit of the cube; units already in
the store count as done. Cancelling the job (:meth:`JobStore.cancel`) stops the fill between
units: the units computed so far stay in the store (their pyramid levels are updated) and the
others stay unfilled (filled on demand, or by another fill). ``workspace`` is a label the caller
records with the job; the engine does not interpret it.
"""

from __future__ import annotations

import hashlib

from stacube.algo.load import Gate
from stacube.errors import StacubeError
from stacube.jobs.stages import JobCancelled
from stacube.jobs.state import ACTIVE, JobStore
from stacube.settings import Settings

KIND = "cube"
STAGE = "fill"


def cube_job_id(name: str) -> str:
    """The base id of the fill job of cube ``name``: ``cube-<12 hex digits>``."""
    return f"{KIND}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def submit_fill(settings: Settings, name: str, *, job_id: str | None = None,
                workspace: str | None = None) -> tuple[dict, bool]:
    """Record the fill job of cube ``name`` (parameters ``{"cube": name}``); returns ``(job,
    created)`` as :meth:`JobStore.submit` (an active fill of that id is returned as it is).

    Args:
        job_id: the job's id (default: :func:`cube_job_id`).
        workspace: a label recorded with the job.
    """
    return JobStore(settings).submit(job_id or cube_job_id(name), {"cube": name}, kind=KIND,
                                     workspace=workspace, stale_after=settings.job_max_age)


def run_fill(settings: Settings, job_id: str, *, workers: int | None = None, gate: Gate | None = None,
             progress=None) -> dict:
    """Run a queued fill job to its end (or resume a running one whose process died); returns its
    report ``{"cube", "status", "fill"}`` (``fill``: :class:`stacube.cubes.fill.FillReport` as a
    dict).

    Args:
        workers: fill processes (None: ``settings.workers``, else 1: in-process).
        gate: the read gate of the sources.
        progress: ``progress("fill", units done, units)`` as units finish.

    Raises:
        JobCancelled: the job was not queued or running (cancelled before it started), or it was
            cancelled during the fill (it stays ``cancelled``).
        NotFound / StorageError / StacubeError: the cube is gone or a unit failed (the job is
            ``failed`` with the reason; failed units are recorded and retried by a later fill).
    """
    from stacube.cubes.fill import all_units, fill_units, load_definition  # lazy: cube modules

    store = JobStore(settings)
    job = store.get(job_id, full=False)
    if job["kind"] != KIND:
        raise StacubeError(f"job {job_id} is a {job['kind']} job, not a cube fill")
    if job["state"] not in ACTIVE:
        raise JobCancelled(f"job {job_id} is {job['state']}; nothing to run")
    name = job["parameters"]["cube"]
    try:
        definition = load_definition(settings, name)
        units = all_units(definition)
        if not store.start(job_id) or not store.advance_stage(job_id, job["stage"] if job["state"] == "running" else None, STAGE,
                                   total=len(units)):
            raise JobCancelled(f"job {job_id} was cancelled")

        def tick(done: int, total: int) -> None:
            store.update(job_id, tiles_done=done)
            if progress is not None:
                progress(STAGE, done, total)

        def cancelled() -> bool:
            return store.state(job_id) != "running"

        report = fill_units(settings, definition, units, workers=workers or settings.workers or 1,
                            progress=tick, cancelled=cancelled, gate=gate)
    except JobCancelled:
        raise
    except StacubeError as exc:
        store.fail_active(job_id, exc.message)
        raise
    except Exception as exc:  # an unexpected error still ends the job, with its reason
        store.fail_active(job_id, f"{type(exc).__name__}: {exc}")
        raise
    doc = {"cube": name, "status": "completed", "fill": report.as_dict()}
    store.update(job_id, tiles_done=len(units))
    if not store.complete(job_id, doc):
        raise JobCancelled(f"job {job_id} was cancelled")
    return doc
