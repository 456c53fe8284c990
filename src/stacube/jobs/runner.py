"""Running compositing jobs locally: submit, then drive the stages through an executor.

Guarantees:

* outputs are produced in the job's staging area and committed only when complete; the catalog
  is written last, so a failed or cancelled job leaves neither outputs nor items;
* the job id is derived from the parameters (or given by the caller): running the same job again
  replaces its outputs and upserts the same items (idempotent);
* state lives in the catalog database: a job whose process was killed resumes (``stacube job
  resume``) without recomputing finished tiles; a tile that fails is retried (with back-off) up
  to ``max_attempts`` times before the job fails.

The stages and the errors that end a job are :mod:`stacube.jobs.stages`'s, shared with the SQS
fan-out (:mod:`stacube.jobs.queue`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import closing

from stacube.algo.load import Gate
from stacube.algo.buffers import reuse_buffers
from stacube.algo.files import reuse_open_files
from stacube.catalog.pgstac import Catalog
from stacube.db.connection import session
from stacube.errors import NotFound, StacubeError
from stacube.jobs import cube_fill, tasks
from stacube.jobs.executors import SerialExecutor, make_executor
from stacube.jobs.plan import Plan, make_plan
from stacube.jobs.spec import CompositeSpec
from stacube.jobs.stages import MAX_ATTEMPTS, JobCancelled, Stage, is_permanent
from stacube.jobs.state import JobStore
from stacube.settings import Settings
from stacube.storage.objects import open_store, storage_error

Progress = Callable[[str, int, int], None]


def submit(spec: CompositeSpec, settings: Settings, *, job_id: str | None = None,
           workspace: str | None = None) -> tuple[dict, bool]:
    """Record a job (see :meth:`JobStore.submit`); returns ``(job, created)``.

    Args:
        job_id: the job's id (default: :meth:`CompositeSpec.job_id`, from the parameters).
        workspace: a label recorded with the job (the HTTP API lists jobs by it); the engine
            does not interpret it.

    Raises:
        NotFound: a collection does not exist (nothing is recorded).
    """
    known = Catalog(settings).collection_ids()
    for collection in spec.collections:
        if collection not in known:
            raise NotFound(f"unknown collection {collection!r}")
    # an active job that made no progress for ``job_max_age`` is stuck: it starts afresh
    return JobStore(settings).submit(job_id or spec.job_id(), spec.model_dump(mode="json"), kind=spec.kind,
                                     workspace=workspace, stale_after=settings.job_max_age)


def check(spec: CompositeSpec, settings: Settings) -> Plan:
    """What a job would fail on at once, found before it is recorded: an output root it cannot
    write, unknown collections, bands or mask assets, no scene in the area and time range, a
    tile pyramid that does not fit the outputs or is too large.
    Returns the plan the job would start from.

    Raises:
        StorageError: the output root is not writable.
        NotFound / InvalidInput / NoData: as :func:`stacube.jobs.plan.make_plan` and
            :func:`stacube.jobs.tasks.check_pyramid`.
    """
    open_store(tasks.output_root(spec, settings), settings).check_writable()
    plan = make_plan(spec, Catalog(settings), tasks.output_root(spec, settings))
    tasks.check_pyramid(plan)
    return plan


def _run_stage(settings: Settings, job_id: str, stage: str, executor, progress: Progress,
               max_attempts: int) -> None:
    store = JobStore(settings)
    job = store.get(job_id, full=False)
    total = job["tiles_total"]
    pending = store.pending_tiles(job_id, stage)
    done = total - len(pending)
    progress(stage, done, total)
    # the stack memory of a tile on this process's threads serves the next tile; the free
    # buffers are released when the stage ends (stacube.algo.buffers)
    with reuse_buffers():
        attempt = 1
        while pending:
            failed: list[tuple[str, BaseException]] = []
            args = [(settings, job_id, stage, t) for t in pending]
            # closed on the way out, so the tiles still running end before the staging is discarded
            with closing(executor.map_unordered(tasks.execute_tile, args)) as outcomes:
                for (_, _, _, tile), outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        if is_permanent(outcome):
                            raise outcome
                        failed.append((tile, outcome))
                    else:
                        done += 1
                        progress(stage, done, total)
            if not failed:
                return
            if attempt >= max_attempts:
                tile, exc = failed[0]
                if isinstance(exc, StacubeError):
                    raise exc
                if (failure := storage_error(exc)) is not None:
                    raise type(failure)(f"tile {tile} failed {attempt} times: {failure.message}") from exc
                raise StacubeError(f"tile {tile} failed {attempt} times: {type(exc).__name__}: {exc}") from exc
            tasks.sleep_before_retry(attempt)
            attempt += 1
            pending = [t for t, _ in failed]


def _end_failed(settings: Settings, job_id: str, message: str, exc: BaseException) -> None:
    """After ``exc`` ended a run: fail the job with ``message`` unless it ended meanwhile (the
    write is conditional, so a cancellation is never overwritten) and drop its staging area.

    Raises:
        JobCancelled: the job was cancelled meanwhile (``exc`` is its cause).
    """
    if not tasks.fail(settings, job_id, message) and JobStore(settings).state(job_id) == "cancelled":
        raise JobCancelled(f"job {job_id} was cancelled") from exc


def run_job(settings: Settings, job_id: str, *, progress: Progress | None = None,
            workers: int | None = None, dask: str | None = None, executor=None,
            max_attempts: int = MAX_ATTEMPTS, restart: bool = True,
            on_register: tasks.OnRegister | None = None, gate: Gate | None = None,
            plan: Plan | None = None) -> dict:
    """Run (or resume) a job to completion and return its report (a ``cube`` job: its fill,
    :func:`stacube.jobs.cube_fill.run_fill`).

    Args:
        settings: catalog and storage configuration.
        job_id: a submitted job.
        progress: ``progress(stage, done, total)`` (stages: ``scenes``, ``composite``, ``cogs``,
            ``pyramid``: the tiles of a step's pyramid).
        workers: tiles run at once (None/0: settings.workers or one per core; 1: one after the
            other), on threads or worker processes (``settings.executor``).
        dask: a Dask scheduler address to run tiles on instead.
        executor: an executor to use (overrides ``workers``/``dask``).
        max_attempts: tries per tile before the job fails.
        restart: run a failed or cancelled job again from the start (``stacube job resume``);
            with False such a job is left as it is (:class:`JobCancelled` is raised), which is
            what a launcher wants when a job was cancelled before its worker started.
        on_register: see :func:`stacube.jobs.tasks.finalize`.
        gate: the read gate of the inputs (see :func:`stacube.jobs.tasks.start`).
        plan: the plan :func:`check` returned for the job's parameters (a job about to start
            is then not planned twice); ignored when the job already has one.

    Raises:
        NotFound / InvalidInput / NoData: bad parameters or nothing to composite (job failed).
        StorageError / StacubeError: a tile failed for good (job failed, staging discarded).
        JobCancelled: the job was cancelled meanwhile.
    """
    # the job's own bookkeeping shares one connection (tiles on threads open theirs); the files
    # tiles on this process's threads read are opened once for the whole run
    with session(settings), reuse_open_files():
        return _run_job(settings, job_id, progress, workers, dask, executor, max_attempts, restart, on_register,
                        gate, plan)


def _run_job(settings: Settings, job_id: str, progress: Progress | None, workers: int | None, dask: str | None,
             executor, max_attempts: int, restart: bool, on_register: tasks.OnRegister | None, gate: Gate | None,
             plan: Plan | None) -> dict:
    store = JobStore(settings)
    job = store.get(job_id)
    if job["state"] == "completed":
        return job["report"]
    if job["kind"] == cube_fill.KIND:  # a cube's fill (a held one, launched as its slot frees)
        if job["state"] in ("failed", "cancelled"):
            if not restart:
                raise JobCancelled(f"job {job_id} is {job['state']}; nothing to run")
            store.submit(job_id, job["parameters"], kind=job["kind"], workspace=job["workspace"])
        return cube_fill.run_fill(settings, job_id, workers=workers, gate=gate, progress=progress)
    if job["state"] in ("failed", "cancelled"):
        if not restart:
            raise JobCancelled(f"job {job_id} is {job['state']}; nothing to run")
        job, _ = store.submit(job_id, job["parameters"], kind=job["kind"], workspace=job["workspace"])
    tick = progress or (lambda stage, done, total: None)
    try:
        plan = tasks.start(settings, job_id, gate=gate, plan=plan)
    except JobCancelled:
        raise
    except StacubeError as exc:  # the plan could not be stored (the output store is unusable...)
        _end_failed(settings, job_id, exc.message, exc)
        raise
    own = executor is None
    if own:
        n_tiles = len(plan.tile_indices())
        executor = SerialExecutor() if n_tiles == 1 and not dask else make_executor(
            workers if workers is not None else (settings.workers or None), dask, settings.executor)
    try:
        stage = store.get(job_id, full=False)["stage"]
        if stage == Stage.SCENES:
            if tasks.scene_pass(plan):  # else the composite tiles count the scenes' pixels
                _run_stage(settings, job_id, Stage.SCENES, executor, tick, max_attempts)
            tasks.finish_stage(settings, job_id, Stage.SCENES)
        elif stage == Stage.PREPARING:  # an earlier run died while preparing (this run is the only driver)
            tasks.finish_stage(settings, job_id, Stage.PREPARING, claimed=True)
        if store.get(job_id, full=False)["stage"] == Stage.COMPOSITE:
            _run_stage(settings, job_id, Stage.COMPOSITE, executor, tick, max_attempts)
            tasks.finish_stage(settings, job_id, Stage.COMPOSITE)
        return tasks.finalize(settings, job_id, on_register=on_register,
                              on_cog=lambda d, t: tick("cogs", d, t),
                              on_tile=lambda d, t: tick("pyramid", d, t),
                              # COGs are written here, whatever ran the tiles
                              threads=max(getattr(executor, "workers", 1), os.cpu_count() or 1))
    except JobCancelled:
        tasks.discard_staging(settings, job_id)
        raise
    except StacubeError as exc:  # (a step that failed the job itself, NoData..., left its staging)
        _end_failed(settings, job_id, exc.message, exc)
        raise
    except (KeyboardInterrupt, SystemExit):
        raise  # state stays "running": `stacube job resume` continues from the last finished tile
    except Exception as exc:
        failure = storage_error(exc)  # full disk, object store down: one line, StorageError
        _end_failed(settings, job_id, failure.message if failure else f"{type(exc).__name__}: {exc}", exc)
        if failure is not None:
            raise failure from exc
        raise
    finally:
        if own:
            executor.close()


def run_composite(spec: CompositeSpec, settings: Settings, *, progress: Progress | None = None,
                  workers: int | None = None, dask: str | None = None, gate: Gate | None = None) -> dict:
    """Submit and run a compositing job; returns its report (see :func:`run_job`)."""
    job, _ = submit(spec, settings)
    return run_job(settings, job["id"], progress=progress, workers=workers, dask=dask, gate=gate)
