"""Creating cubes over HTTP, their Open Data Cube ingestion configurations and fill state: the
routes the console's cube builder uses, added to the cubes API (:func:`add_builder_routes`).

* ``POST /cubes/`` - create a cube. The JSON body holds the parameters of ``stacube cube create``
  (``name``, ``collections``, ``datetime``, ``bbox``, ``grid``, ``bands``, ``indices``, ``method``,
  ``period``, ``chunk``, ``time_chunk``, ``tile_size``, ``dtypes``, ``nodata``...), or ``config``:
  an ODC ingestion configuration (YAML text or the mapping) plus the options that may go with it
  (``name``, ``datetime``, ``bbox``...); and ``fill``: ``on_demand`` (default: chunks are computed
  when first read) or ``now`` (every unit is computed in the background by a job of kind ``cube``,
  :mod:`stacube.jobs.cube_fill`: recorded in the caller's workspace, listed by ``GET /jobs`` with
  its progress in fill units, cancellable between units; one fill at a time per server process,
  and it takes one of the workspace's job slots: when they are all taken it is held, ``queued``,
  until one frees; ``GET /cubes/{name}`` also reports the progress under ``fill``). Answers 201
  with the cube's description (and ``job``: ``id``, ``state``, ``held``, ``href``, for a ``now``
  fill);
* ``POST /cubes/ingestion-config`` - the ODC ingestion configuration (YAML) of the cube such a
  body would create, without creating it; ``GET /cubes/{name}/ingestion-config`` - that of a cube;
* ``GET /cubes/{name}/filled`` - the fill units recorded so far as GeoJSON (lon/lat polygons of
  their tiles, with ``state`` and the units' time range).

Access: the caller must be allowed to submit jobs (anonymous callers only where anonymous jobs
are on), and read every source collection (else the 404 of an unknown collection, as the other
cube routes answer); the new cube's collection is claimed for the caller's workspace. Cost is
bounded: ``output`` cannot be set (cubes go to the configured store; an ingestion
configuration's ``location`` is not used), a cube holds at most :data:`MAX_VALUES` values at
full resolution, a ``now`` fill at most :data:`MAX_FILL_NOW_UNITS` units, and the listing of
filled units at most ``limit`` (<= 10 000) features. Bad input answers 4xx JSON.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from stacube.access.jobs import JobSlots, check_submitter, claim_output, job_workspace, scoped_job_id
from stacube.catalog.pgstac import Catalog
from stacube.cubes.build import create_cube
from stacube.cubes.definition import define_cube
from stacube.cubes.fill import all_units, fill_state, filled_regions, load_definition
from stacube.cubes.ingestion import ingestion_yaml, parse_ingestion_yaml, spec_from_ingestion_config
from stacube.cubes.spec import CubeSpec, build_cube_spec
from stacube.errors import Conflict, InvalidInput, NotFound, StacubeError
from stacube.jobs.cube_fill import cube_job_id, run_fill, submit_fill
from stacube.settings import Settings
from stacube_services.access.service import principal_of

logger = logging.getLogger("stacube")

FILL_MODES = ("on_demand", "now")
#: Values (time steps x pixels x variables, level 0) a cube created over HTTP may hold.
MAX_VALUES = 2_000_000_000
#: Fill units a ``fill: now`` request may compute.
MAX_FILL_NOW_UNITS = 256
HTTP_FORBIDDEN = ("output", "replace")
YAML_TYPE = "application/yaml"
EXAMPLE = {"name": "s2-ndvi", "collections": ["sentinel-2-l1c-eolearn-sample"],
           "bbox": [14.5514, 45.8659, 14.5642, 45.875], "datetime": "2015-07-01/2015-09-30",
           "bands": ["red", "nir"], "indices": ["NDVI"], "fill": "on_demand"}


def spec_from_body(body: dict, catalog: Catalog, readable) -> tuple[CubeSpec, str]:
    """``(spec, fill mode)`` of a ``POST /cubes/`` body (see the module docstring);
    ``readable(collection ids)`` raises for a collection the caller may not read.

    Raises:
        InvalidInput: a bad parameter (one line naming it). NotFound: an unknown collection of a
            configuration.
    """
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object of cube parameters")
    params = dict(body)
    fill = params.pop("fill", "on_demand")
    if fill not in FILL_MODES:
        raise InvalidInput(f"fill {fill!r}: use {' or '.join(FILL_MODES)}")
    for key in HTTP_FORBIDDEN:
        if key in params:
            raise InvalidInput(f"{key!r} cannot be set over HTTP (cubes go to the configured store)")
    if "config" in params:
        config = params.pop("config")
        doc = parse_ingestion_yaml(config, "config") if isinstance(config, str) else config
        if isinstance(doc, dict):
            doc = {k: v for k, v in doc.items() if k != "location"}
        spec = spec_from_ingestion_config(doc, **params)
        readable(spec.collections)  # before the catalog is asked about them
        spec = spec_from_ingestion_config(doc, catalog=catalog, **params)
    else:
        spec = build_cube_spec(**params)
        readable(spec.collections)
    return spec, fill


def check_cost(definition, fill: str) -> None:
    """Refuse a cube above :data:`MAX_VALUES`, or a ``now`` fill above :data:`MAX_FILL_NOW_UNITS`.

    Raises:
        InvalidInput: so, with the figures.
    """
    gb = definition.geobox
    values = len(definition.steps) * gb.shape.y * gb.shape.x * len(definition.variables)
    if values > MAX_VALUES:
        raise InvalidInput(f"the cube would hold {values:,} values ({len(definition.steps)} steps x "
                           f"{gb.shape.x} x {gb.shape.y} px x {len(definition.variables)} variables); the limit "
                           f"over HTTP is {MAX_VALUES:,}: choose a smaller area, a coarser grid or fewer dates")
    units = len(all_units(definition))
    if fill == "now" and units > MAX_FILL_NOW_UNITS:
        raise InvalidInput(f"fill now: the cube has {units} fill units, more than the {MAX_FILL_NOW_UNITS} a "
                           "request may compute; use fill on_demand")


def add_builder_routes(app: FastAPI, settings: Settings, *, caller, readable_cube, summary, gate=None) -> None:
    """Add the routes of the module docstring to the cubes app.

    Args:
        caller / readable_cube: the cubes app's access dependencies
            (:func:`stacube_services.access.cubes.cube_dependencies`).
        summary: ``summary(definition, request) -> dict``, the cubes app's description of a cube.
        gate: ``gate() -> Gate``, the read gate of the sources a ``now`` fill reads.
    """
    fills = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stacube-cube-fill")
    slots = JobSlots(settings)
    Caller = Depends(caller)

    def checked_spec(body: dict, who) -> tuple[CubeSpec, str, Catalog]:
        def readable(collections):
            for cid in collections:
                if not who.collection(cid):
                    raise NotFound(f"unknown collection {cid!r}")

        catalog = Catalog(settings)
        spec, fill = spec_from_body(body, catalog, readable)
        return spec, fill, catalog

    def background_fill(job_id: str) -> None:
        try:
            report = run_fill(settings, job_id, workers=settings.workers or 1, gate=gate() if gate else None)
            logger.info("cube fill job %s: %s", job_id, report)
        except StacubeError as exc:  # recorded in the job (and as failed units)
            logger.warning("cube fill job %s: %s", job_id, exc.message)
        except Exception:
            logger.exception("cube fill job %s failed", job_id)

    def start_fill(name: str, workspace: str | None, request: Request) -> dict:
        """Record the fill job (in the caller's workspace) and run it here, or hold it while the
        workspace's job slots are taken (the jobs API launches it when one frees)."""
        job, created = submit_fill(settings, name, job_id=scoped_job_id(cube_job_id(name), workspace),
                                   workspace=workspace)
        held = slots.is_held(job["id"])
        if created:
            held = not slots.admit(job["id"], workspace)
            if not held:
                fills.submit(background_fill, job["id"])
        site = str(request.base_url).rstrip("/").rsplit("/cubes", 1)[0]
        return {"id": job["id"], "kind": job["kind"], "state": job["state"], "held": held,
                "href": f"{site}/jobs/{job['id']}"}

    @app.post("/", status_code=201, summary="Create a cube")
    def create(request: Request, who=Caller, body: dict[str, Any] = Body(..., examples=[EXAMPLE])):
        principal = principal_of(request)
        check_submitter(settings, principal)
        spec, fill, catalog = checked_spec(body, who)
        check_cost(define_cube(spec, catalog, f"{settings.output_root}/cubes"), fill)
        if not who.collection(spec.name) or spec.name in catalog.collection_ids():
            raise Conflict(f"a collection or cube named {spec.name!r} exists; choose another name")
        claim_output(settings, spec.name, job_workspace(principal))
        created = create_cube(spec, settings, fill=False)
        job = start_fill(spec.name, job_workspace(principal), request) if fill == "now" else None
        doc = summary(created.definition, request)
        doc["fill"] = {"mode": fill, **fill_state(settings, created.definition)}
        if job is not None:
            doc["job"] = job
        return JSONResponse(doc, status_code=201)

    @app.post("/ingestion-config", summary="The ODC ingestion configuration of a cube not yet created",
              response_class=Response)
    def preview_config(request: Request, who=Caller, body: dict[str, Any] = Body(..., examples=[EXAMPLE])):
        spec, _, catalog = checked_spec(body, who)
        definition = define_cube(spec, catalog, f"{settings.output_root}/cubes")
        return Response(ingestion_yaml(definition), media_type=YAML_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{spec.name}.yaml"'})

    @app.get("/{name}/ingestion-config", summary="The ODC ingestion configuration of a cube",
             response_class=Response, dependencies=[Depends(readable_cube)])
    def cube_config(name: str):
        return Response(ingestion_yaml(load_definition(settings, name)), media_type=YAML_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}.yaml"'})

    @app.get("/{name}/filled", summary="The filled parts of a cube (GeoJSON)",
             dependencies=[Depends(readable_cube)])
    def filled(name: str, limit: int = Query(10_000, ge=1, le=10_000)):
        definition = load_definition(settings, name)
        return JSONResponse(filled_regions(settings, definition, limit=limit),
                            media_type="application/geo+json")
