"""The jobs API: submit compositing jobs over HTTP and follow them.

``POST /jobs`` takes the parameters of ``stacube composite`` (``collections``, ``bbox``,
``bbox_crs``, ``datetime``, ``method``, ``bands``, ``indices``, ``max_cloud``, ``mask_asset``,
``clear``, ``period``, ``crs``, ``resolution``, ``output_collection``, ``tile_size``), validates them
(400 with a reason), records the job and hands it to a launcher: a local worker process under
``stacube up``, a queue message on AWS. ``GET /jobs``, ``GET /jobs/{id}`` (state, progress,
report, download links), ``GET /jobs/{id}/report``, ``POST /jobs/{id}/cancel``, and views of
a completed job's outputs (:mod:`stacube_services.job_outputs`: ``preview.png``, a filled
preview; ``region.nc``, a bbox of the outputs as NetCDF). The fills of cubes created with
``"fill": "now"`` (``POST /cubes/``) are jobs too, of kind ``cube``: listed and cancelled here,
their progress in fill units (``tiles_done`` of ``tiles_total``), their document naming the
``cube`` (and a ``cube`` link). With
``"process": "<name>"`` and ``"parameters": {...}`` (plus the inputs, area and time above), it
runs a *registered* process (entry point group ``stacube.processes``; its parameters checked
against its schema): no request names a module path or brings code; ``GET /jobs/processes``
lists them with their parameter schemas. Callers see their
own jobs only; inputs must be readable and outputs go into the caller's workspace
(:mod:`stacube.access.jobs`): the job's id is scoped by the workspace, and the job claims its
output collection for it when it registers its items.

Every submission is sized first (:func:`stacube.jobs.estimate.estimate`: output pixels x scenes x
bands) and refused above the caller's quota; anonymous callers may submit only where allowed;
at most ``max_jobs`` of a workspace run at once, the others are held (``"held": true``, state
``queued``) and launched as slots free (checked on every request, and every few seconds by the
local launcher).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from stacube.access.jobs import (
    JobSlots,
    check_job,
    check_limits,
    check_submitter,
    job_workspace,
    scoped_job_id,
    visible_job,
)
from stacube.catalog.pgstac import Catalog
from stacube.errors import InvalidInput, NotFound, StacubeError
from stacube.jobs.cube_fill import KIND as CUBE_KIND
from stacube.jobs.estimate import estimate
from stacube.jobs.processes import process_catalog, registered_spec
from stacube.jobs.runner import submit as submit_job
from stacube.jobs.spec import build_spec
from stacube.jobs.state import ANY_WORKSPACE, JobStore
from stacube.settings import Settings
from stacube.storage.objects import s3_client
from stacube_services.access.service import AccessService, AuthMiddleware, PsycopgDb, principal_of
from stacube_services.errors import JsonBodyMiddleware, add_error_handlers, error_response
from stacube_services.files import local_output_dir
from stacube_services.job_outputs import add_output_routes
from stacube_services.limits import RequestLimits

DISPATCH_EVERY = 2.0  # seconds between checks for held jobs (local launcher)

HTTP_FORBIDDEN_PARAMETERS = ("output",)


class Launcher(Protocol):
    """Starts the work of a submitted job somewhere."""

    def launch(self, job_id: str) -> None: ...


class LocalLauncher:
    """Runs each job in its own ``stacube jobs run`` process (detached from the server).

    Logs go to ``<data_dir>/jobs/<job id>.log``.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.processes: dict[str, subprocess.Popen] = {}

    def launch(self, job_id: str) -> None:
        logs = (self.settings.data_dir / "jobs").absolute()
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"{job_id}.log", "ab")
        self.processes[job_id] = subprocess.Popen(
            [sys.executable, "-m", "stacube.cli.main", "job", "run", job_id],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ}, cwd=os.getcwd(),
        )
        for done in [j for j, p in self.processes.items() if p.poll() is not None]:
            self.processes.pop(done, None)


class HeldJobs:
    """Launches held jobs (:class:`stacube.access.jobs.JobSlots`) once their workspace has a free
    slot: on every request, and every :data:`DISPATCH_EVERY` seconds from a daemon thread when
    ``poll`` (a local launcher: slots free as job processes end, not on requests)."""

    def __init__(self, settings: Settings, launcher: Launcher, *, poll: bool):
        self.slots = JobSlots(settings)
        self.launcher = launcher
        self.poll = poll
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def dispatch(self) -> list[str]:
        """Launch the held jobs a slot has freed for; returns their ids."""
        launched = self.slots.releasable()
        for job_id in launched:
            self.launcher.launch(job_id)
        if self.poll:
            self._start()
        return launched

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            stop = threading.Event()

            def loop():
                while not stop.wait(DISPATCH_EVERY):
                    try:
                        for job_id in self.slots.releasable():
                            self.launcher.launch(job_id)
                    except Exception:  # the database may be away for a while: try again later
                        continue

            self._thread = threading.Thread(target=loop, name="stacube-held-jobs", daemon=True)
            self._thread.start()


def default_launcher(settings: Settings) -> Launcher:
    """The queue launcher when a plan queue is configured (AWS), else local processes."""
    if os.environ.get("STACUBE_PLAN_QUEUE_URL"):
        from stacube.jobs.queue import QueueLauncher  # lazy: boto3 only on AWS

        return QueueLauncher(settings)
    return LocalLauncher(settings)


def download_url(href: str, site: str, settings: Settings) -> str:
    """An HTTP address for an output: ``/files/...`` for local outputs, a presigned URL on S3."""
    if href.startswith("s3://"):
        try:
            bucket, key = href[5:].split("/", 1)
            return s3_client(settings).generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
        except Exception:  # no credentials: the URI is still useful to S3 clients
            return href
    root = local_output_dir(settings)
    if root is not None:
        try:
            rel = Path(href).resolve().relative_to(root.resolve())
            return f"{site}/files/{rel.as_posix()}"
        except ValueError:
            pass
    return href


def job_summary(report: dict) -> dict:
    """Scene and pixel counts of a completed job, from its report.

    Returns:
        ``scenes`` (over the area and dates), ``scenes_used`` (used, with at least one clear pixel
        when counted), ``pixels`` (output pixels per variable and period: rows x columns),
        ``shape`` ``[rows, columns]``, ``clear_observations`` (clear pixels of the used scenes
        inside the area, summed; None when the scenes were not counted), ``periods``, ``cogs``.
    """
    scenes = report.get("scenes") or []
    used = [s for s in scenes if s.get("used") and (s.get("clear_pixels") is None or s["clear_pixels"] > 0)]
    shape = list((report.get("grid") or {}).get("shape") or [])
    counted = [s["clear_pixels"] for s in used if s.get("clear_pixels") is not None]
    cogs = (report.get("outputs") or {}).get("cogs") or {}
    return {
        "scenes": len(scenes), "scenes_used": len(used),
        "pixels": shape[0] * shape[1] if len(shape) == 2 else None, "shape": shape,
        "clear_observations": sum(counted) if used and len(counted) == len(used) else None,
        "periods": len(report.get("steps") or []), "cogs": sum(len(v) for v in cogs.values()),
    }


def job_document(job: dict, request: Request, settings: Settings, mount: str) -> dict:
    """The public view of a job."""
    base = str(request.base_url).rstrip("/")
    site = base[: -len(mount)] if mount and base.endswith(mount) else base
    report = job.get("report")
    doc: dict[str, Any] = {
        "id": job["id"],
        "kind": job["kind"],
        "state": job["state"],
        "parameters": job["parameters"],
        "created": job["created"], "started": job["started"], "finished": job["finished"],
        "progress": {"stage": job["stage"], "tiles_done": job["tiles_done"],
                     "tiles_failed": job["tiles_failed"], "tiles_total": job["tiles_total"]},
        "error": job["error"],
        "collection": (report or {}).get("collection") or job.get("collection"),
        "items": (report or {}).get("items", []),
        "links": [
            {"rel": "self", "href": f"{base}/{job['id']}", "type": "application/json"},
            {"rel": "cancel", "href": f"{base}/{job['id']}/cancel", "method": "POST"},
        ],
    }
    if "report" in job:
        doc["report"] = report
    if "held" in job:
        doc["held"] = job["held"]
    if job["kind"] == CUBE_KIND:  # a cube's fill: progress in fill units, the cube to open
        name = (job["parameters"] or {}).get("cube")
        doc["cube"] = name
        doc["links"].append({"rel": "cube", "href": f"{site}/cubes/{name}", "type": "application/json"})
    elif report:
        doc["summary"] = job_summary(report)
        out = report["outputs"]
        doc["downloads"] = {
            "report": download_url(out["report"], site, settings),
            "zarr": download_url(out["zarr"], site, settings),
            "cogs": {label: {var: download_url(h, site, settings) for var, h in cogs.items()}
                     for label, cogs in out["cogs"].items()},
        }
        if out.get("tiles"):  # a tile template is no single object: no presigned URL on S3
            doc["downloads"]["tiles"] = {label: h if h.startswith("s3://") else download_url(h, site, settings)
                                         for label, h in out["tiles"].items()}
            doc["downloads"]["tilejson"] = {label: download_url(h, site, settings)
                                            for label, h in out["tilejson"].items()}
        if out["zarr"].startswith("s3://"):
            # a presigned URL names one object: the cube's consolidated metadata, and the cube as
            # an HTTP Zarr store whose keys redirect to presigned URLs of their objects
            doc["downloads"]["zarr"] = f"{base}/{job['id']}/zarr"
            doc["downloads"]["zarr_metadata"] = download_url(out["zarr"].rstrip("/") + "/.zmetadata", site, settings)
        doc["links"].append({"rel": "report", "href": f"{base}/{job['id']}/report", "type": "application/json"})
        for item in report["items"]:
            doc["links"].append({"rel": "item", "type": "application/geo+json",
                                 "href": f"{site}/stac/collections/{report['collection']}/items/{item}"})
    return doc


def create_jobs_app(settings: Settings, *, launcher: Launcher | None = None, mount: str = "/jobs") -> FastAPI:
    """The jobs API (a factory: the launcher is swappable, e.g. a queue on AWS)."""

    launcher = launcher or default_launcher(settings)
    store = JobStore(settings)
    app = FastAPI(title="stacube jobs API", openapi_url="/api", docs_url="/api.html",
                  description="Submit compositing jobs and follow them.")
    add_error_handlers(app)
    app.add_middleware(JsonBodyMiddleware)
    app.state.launcher = launcher
    held = HeldJobs(settings, launcher, poll=isinstance(launcher, LocalLauncher))
    # the caller (API key or token): inputs it may read, outputs into its workspace, its own jobs only
    app.add_middleware(AuthMiddleware, service=AccessService(settings, PsycopgDb(settings)))
    app.add_middleware(RequestLimits, settings=settings)

    def owned(request: Request, job_id: str, *, full: bool = True) -> dict:
        held.dispatch()
        job = store.get(job_id, full=full)
        if not visible_job(principal_of(request), job):
            raise NotFound(f"unknown job {job_id!r}")
        job["held"] = held.slots.is_held(job_id)
        return job

    @app.post("", status_code=202, summary="Submit a compositing job")
    @app.post("/", status_code=202, include_in_schema=False)
    def submit(request: Request, parameters: dict = Body(..., examples=[{
        "collections": ["sentinel-2-l1c-eolearn-sample"], "bbox": [14.5514, 45.8659, 14.5642, 45.875],
        "datetime": "2015-07-01/2015-09-30", "method": "median", "indices": ["NDVI"]}])):
        """Validate the parameters, record the job and start it. Submitting the parameters of a
        job that is still running returns that job."""
        principal = principal_of(request)
        check_submitter(settings, principal)
        for name in HTTP_FORBIDDEN_PARAMETERS:
            if name in parameters:
                raise InvalidInput(f"{name!r} cannot be set over HTTP (outputs go to the configured store)")
        spec = registered_spec(parameters) if "process" in parameters else build_spec(**parameters)
        spec = check_job(settings, principal, spec)
        check_limits(settings, principal, estimate(spec, Catalog(settings)), spec)
        workspace = job_workspace(principal)
        held.dispatch()
        job, created = submit_job(spec, settings, job_id=scoped_job_id(spec.job_id(), workspace),
                                  workspace=workspace)
        if created:
            job["held"] = not held.slots.admit(job["id"], workspace)
            if not job["held"]:
                launcher.launch(job["id"])
        else:
            job["held"] = held.slots.is_held(job["id"])
        status = 202 if created else 200
        return JSONResponse(job_document_json(job, request), status_code=status)

    def job_document_json(job: dict, request: Request) -> dict:
        import json

        return json.loads(json.dumps(job_document(job, request, settings, mount), default=str))

    @app.get("", summary="List jobs")
    @app.get("/", include_in_schema=False)
    def list_jobs(request: Request, state: str | None = Query(None), limit: int = Query(50, ge=1, le=500),
                  offset: int = Query(0, ge=0)) -> dict:
        principal = principal_of(request)
        held.dispatch()
        workspace = ANY_WORKSPACE if principal.is_admin else job_workspace(principal)
        jobs = store.list(state=state, limit=limit, offset=offset, workspace=workspace)
        return {"jobs": [job_document_json(j, request) for j in jobs]}

    @app.get("/processes", summary="The registered processes a job may run, with their parameters")
    def list_processes(request: Request) -> dict:
        """Each registered process (entry point group ``stacube.processes``): name, version (hash
        of its source), description, the JSON Schema of its parameters and its declared outputs;
        a process that does not load is left out."""
        check_submitter(settings, principal_of(request))
        return {"processes": process_catalog()}

    @app.get("/{job_id}", summary="A job: state, progress, report, downloads")
    def get_job(request: Request, job_id: str) -> dict:
        job = owned(request, job_id)
        job.pop("plan", None)
        return job_document_json(job, request)

    @app.get("/{job_id}/report", summary="The report of a completed job")
    def get_report(request: Request, job_id: str) -> dict:
        job = owned(request, job_id)
        if not job["report"]:
            raise NotFound(f"job {job_id} has no report yet (state {job['state']})")
        return job["report"]

    @app.get("/{job_id}/zarr/{key:path}", summary="A key of a completed job's Zarr cube (S3 outputs)",
             status_code=307, response_class=RedirectResponse)
    def zarr_key(request: Request, job_id: str, key: str) -> RedirectResponse:
        """Redirects to a presigned URL of the object (``.zmetadata``, ``NDVI/0.0.0``...), so
        ``xarray.open_zarr("<this job>/zarr")`` reads the cube over HTTP."""
        job = owned(request, job_id)
        href = ((job.get("report") or {}).get("outputs") or {}).get("zarr", "")
        parts = key.split("/")
        if not href.startswith("s3://") or not key or any(p in ("", ".", "..") for p in parts):
            raise NotFound(f"job {job_id} has no Zarr key {key!r}")
        return RedirectResponse(download_url(f"{href.rstrip('/')}/{key}", "", settings), status_code=307)

    add_output_routes(app, owned, settings)

    @app.post("/{job_id}/cancel", status_code=202, summary="Cancel a job")
    def cancel(request: Request, job_id: str) -> dict:
        owned(request, job_id, full=False)
        return job_document_json(store.cancel(job_id), request)

    @app.exception_handler(StacubeError)
    async def _err(request, exc: StacubeError):
        return error_response(exc.status_code, type(exc).__name__, exc.message)

    return app
