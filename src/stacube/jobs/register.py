"""Registering job outputs as STAC Items of a derived collection.

Each output time step becomes one Item (``<job id>_<period>``) with a COG asset per variable,
the Zarr cube and the report as assets, ``processing:*`` fields (processing extension) and a
``derived_from`` link to every input item. A job with a tile pyramid adds its TileJSON as the
``tilejson`` asset and ``xyz`` / ``tilejson`` links (web-map-links extension) to the tile
template. The derived collection carries ``item_assets`` with
``eo:bands`` common names, so composites are themselves composable, searchable and tileable.
"""

from __future__ import annotations

from datetime import datetime, timezone

from stacube import __version__
from stacube.catalog.bands import COMMON_NAMES, asset_common_name
from stacube.catalog.products import EXTENSIONS, STAC_VERSION
from stacube.core.crs import proj_fields
from stacube.jobs.plan import Plan

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
ZARR_TYPE = "application/vnd+zarr"
TILEJSON_ASSET = {"title": "TileJSON of the static tile pyramid (WebMercatorQuad XYZ)", "type": "application/json",
                  "roles": ["tiles", "metadata"]}


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _band_fields(plan: Plan, var: str) -> dict:
    dtype = plan.dtype_of(var)
    fill = plan.fill_of(var)
    raster = {"data_type": dtype, "nodata": "nan" if dtype.startswith("float") and fill != fill else fill}
    fields: dict = {"raster:bands": [raster]}
    if plan.is_process:
        fields["description"] = f"{var}: output of process {plan.spec.process_name}"
    elif var in plan.bands:
        src = plan.sources[0]
        asset = (src.collection.get("item_assets") or {}).get(src.assets[var], {})
        common = asset_common_name(asset) or (var if var in COMMON_NAMES else None)
        band = {"name": var}
        if common:
            band["common_name"] = common
        fields["eo:bands"] = [band]
        raster["unit"] = "1"
    elif var in plan.indices:
        fields["description"] = f"{var} spectral index (formula from spyndex)"
    elif var == "provenance":
        fields["description"] = "day of year of the chosen observation (-1: none)"
    else:
        fields["description"] = var.replace("_", " ") + " of observations in the period"
    return fields


def _roles(plan: Plan, var: str) -> list[str]:
    if plan.is_process or var in plan.bands or var in plan.indices:
        return ["data"]
    return ["metadata"]


def derived_collection(plan: Plan) -> dict:
    """The collection composites are registered in."""
    spec = plan.spec
    item_assets = {
        var: {"title": var, "type": COG_TYPE, "roles": _roles(plan, var), **_band_fields(plan, var)}
        for var in plan.variables
    }
    item_assets["zarr"] = {"title": "Zarr cube of the job", "type": ZARR_TYPE, "roles": ["data", "zarr"]}
    item_assets["report"] = {"title": "Job report", "type": "application/json", "roles": ["metadata"]}
    if spec.pyramid is not None:
        item_assets["tilejson"] = dict(TILEJSON_ASSET)
    platforms = sorted({p for s in plan.sources for p in (s.collection.get("summaries") or {}).get("platform", [])})
    return {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXTENSIONS[k] for k in ("item_assets", "eo", "raster", "proj", "processing")],
        "id": plan.output_collection,
        "title": (f"outputs of process {spec.process_name} over {', '.join(spec.collections)}" if plan.is_process
                  else f"{spec.method} composites of {', '.join(spec.collections)}"),
        "description": (
            f"Outputs of the process {spec.process_name} over cloud-masked scenes of {', '.join(spec.collections)} "
            "made by stacube: one item per job and period, one COG per output, plus a Zarr cube."
            if plan.is_process else
            f"Cloud-masked {spec.method} composites of {', '.join(spec.collections)} made by stacube: "
            "one item per job and period, one COG per band, index and count, plus a Zarr cube."
        ),
        "license": "other",
        "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
                   "temporal": {"interval": [[None, None]]}},
        "summaries": {"platform": platforms} if platforms else {},
        "item_assets": item_assets,
        "stacube:storage": {"crs": plan.geobox.crs.epsg and f"EPSG:{plan.geobox.crs.epsg}" or plan.geobox.crs.to_wkt(),
                            "resolution": [abs(plan.geobox.resolution.x), abs(plan.geobox.resolution.y)]},
        "links": [{"rel": "derived_from", "href": f"../{c}", "type": "application/json"}
                  for c in spec.collections],
    }


def _lineage(plan: Plan, scenes: int) -> str:
    what = (f"stacube process run ({plan.spec.process_name} {plan.spec.version})" if plan.is_process
            else f"stacube composite --method {plan.spec.method}")
    return f"{what} over {scenes} scenes of {', '.join(plan.spec.collections)}"


def _process_fields(plan: Plan, report: dict) -> dict:
    """A process job's ``processing:*`` fields: its name and version (the hash of its source)
    as software and version, its parameters as the processing expression, and how many tiles
    failed in it."""
    if not plan.is_process:
        return {}
    spec = plan.spec
    return {
        "processing:software": {"stacube": __version__, spec.process_name: spec.version},
        "processing:version": spec.version,
        "processing:expression": {"format": "stacube-process",
                                  "expression": {"process": spec.process_name, "version": spec.version,
                                                 "parameters": spec.parameters}},
        "stacube:process": spec.process_name,
        "stacube:failed_tiles": report.get("failed_tiles", 0),
    }


def _pyramid_links(plan: Plan, hrefs: dict, label: str) -> list[dict]:
    """The step's ``xyz`` and ``tilejson`` links (web-map-links extension), none without a pyramid."""
    spec = plan.spec.pyramid
    if spec is None or label not in hrefs.get("tiles", {}):
        return []
    from stacube.jobs.pyramid import MEDIA_TYPES  # lazy: rio-tiler, only for jobs with a pyramid

    title = f"Static tiles of {plan.job_id}_{label}"
    return [{"rel": "xyz", "href": hrefs["tiles"][label], "type": MEDIA_TYPES[spec.format], "title": title},
            {"rel": "tilejson", "href": hrefs["tilejson"][label], "type": "application/json", "title": title}]


def derived_items(plan: Plan, report: dict, hrefs: dict, stac_base: str) -> list[dict]:
    """One STAC Item per output step.

    Args:
        plan: the job plan.
        report: the job report (scenes used per step).
        hrefs: ``{"cogs": {label: {var: href}}, "zarr": href, "report": href}``, and with a
            pyramid ``"tiles"`` / ``"tilejson"``: ``{label: href}``.
        stac_base: base URL of the STAC API, for ``derived_from`` links to the input items.
    """
    geobox = plan.geobox
    footprint = geobox.extent.to_crs("EPSG:4326")
    geometry = footprint.json
    bbox = list(footprint.boundingbox)
    proj = proj_fields(geobox.crs)
    proj.update({
        "proj:shape": [geobox.shape.y, geobox.shape.x],
        "proj:transform": list(geobox.affine)[:6],
        "proj:bbox": list(geobox.extent.boundingbox),
    })
    now = _iso(datetime.now(timezone.utc))
    items = []
    for step in report["steps"]:
        label = step["label"]
        assets = {}
        for var in plan.variables:
            assets[var] = {
                "href": hrefs["cogs"][label][var], "type": COG_TYPE, "title": var,
                "roles": _roles(plan, var), **proj, **_band_fields(plan, var),
            }
        assets["zarr"] = {"href": hrefs["zarr"], "type": ZARR_TYPE, "title": "Zarr cube of the job",
                          "roles": ["data", "zarr"], "stacube:time_index": step["index"]}
        assets["report"] = {"href": hrefs["report"], "type": "application/json",
                            "title": "Job report", "roles": ["metadata"]}
        used = step["items"]
        links = [
            {"rel": "derived_from", "type": "application/geo+json", "title": item_id,
             "href": f"{stac_base}/collections/{plan.items[item_id]['collection']}/items/{item_id}"}
            for item_id in used
        ]
        pyramid = _pyramid_links(plan, hrefs, label)
        if pyramid:
            assets["tilejson"] = {"href": hrefs["tilejson"][label], **TILEJSON_ASSET}
            links.extend(pyramid)
        items.append({
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": [EXTENSIONS[k] for k in ("eo", "raster", "proj", "processing")]
                               + ([EXTENSIONS["web-map-links"]] if pyramid else []),
            "id": f"{plan.job_id}_{label}",
            "collection": plan.output_collection,
            "geometry": geometry,
            "bbox": bbox,
            "properties": {
                "datetime": None,
                "start_datetime": step["start"],
                "end_datetime": step["end"],
                "created": now,
                "processing:level": "L3",
                "processing:facility": "stacube",
                "processing:software": {"stacube": __version__},
                "processing:datetime": now,
                "processing:lineage": _lineage(plan, len(used)),
                "stacube:job": plan.job_id,
                "stacube:method": plan.spec.method,
                "stacube:scenes": len(used),
                "stacube:parameters": plan.spec.model_dump(mode="json", exclude_none=True),
                **_process_fields(plan, report),
            },
            "links": links,
            "assets": assets,
        })
    return items
