"""Views of a completed job's outputs: a *filled preview* of one COG and a *region* as NetCDF.

Routes of the jobs API (behind the same gate as ``GET /jobs/{id}``: a caller reaches the
outputs of its own jobs only, another workspace's job answers 404):

* ``GET /jobs/{id}/preview.png?period=LABEL&variable=VAR`` - the COG of one period and variable,
  read with rio-tiler (``Reader.preview``, at most ``max_size`` px a side), rescaled
  (``rescale=MIN,MAX``, default the 2nd-98th percentiles of its valid pixels), coloured
  (``colormap_name``, a rio-tiler colormap, default ``viridis``) and with its no-data pixels
  (nodata, NaN, outside the footprint) painted :data:`NODATA_COLOUR` instead of left
  transparent, so gaps of a composite stand out. PNG written by rio-tiler (GDAL).
* ``GET /jobs/{id}/region.nc?bbox=MINX,MINY,MAXX,MAXY&bbox_crs=EPSG:4326&variables=a,b`` - the
  outputs (every period, the chosen variables) over a bbox, read from the COGs with rioxarray
  (``clip_box``: the pixels that touch the bbox, grid CRS kept) and written as NetCDF by
  :func:`stacube.core.cf.to_netcdf` (what ``stacube cube open -o region.nc`` writes). Bounded:
  at most ``STACUBE_MAX_PART_SIZE`` px a side and ``STACUBE_MAX_RESPONSE_SIZE`` bytes of values,
  else 400 with the sizes.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from stacube.core.bbox import parse_bbox
from stacube.core.cf import to_netcdf
from stacube.core.crs import check_crs
from stacube.errors import InvalidInput, NoData, NotFound, listing
from stacube.settings import Settings

#: Colour of no-data pixels in a filled preview (magenta: in no colormap rio-tiler ships).
NODATA_COLOUR = (255, 0, 255)
PREVIEW_SIZE = 512
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def output_cogs(job: dict) -> dict[str, dict[str, str]]:
    """``{period label: {variable: COG href}}`` of a completed job.

    Raises:
        NotFound: the job has no outputs (yet).
    """
    cogs = (((job.get("report") or {}).get("outputs") or {}).get("cogs")) or {}
    if not cogs:
        raise NotFound(f"job {job['id']} has no outputs yet (state {job.get('state')})")
    return cogs


def pick(choices, value: str | None, what: str) -> str:
    """``value`` if it is one of ``choices``, the first choice when None.

    Raises:
        InvalidInput: not a choice (the message lists them).
    """
    choices = list(choices)
    if value is None:
        return choices[0]
    if value not in choices:
        raise InvalidInput(f"{what} {value!r}: expected one of {listing(choices, none='none')}")
    return value


def parse_rescale(text: str | None) -> tuple[float, float] | None:
    """``"MIN,MAX"`` -> (min, max); None when not given.

    Raises:
        InvalidInput: not two finite numbers with min < max.
    """
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput(f"rescale {text!r}: expected MIN,MAX") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InvalidInput(f"rescale {text!r}: expected finite MIN < MAX")
    return lo, hi


def filled_preview(href: str, *, max_size: int = PREVIEW_SIZE, colormap_name: str = "viridis",
                   rescale: tuple[float, float] | None = None) -> bytes:
    """A PNG of band 1 of a COG with its no-data pixels painted :data:`NODATA_COLOUR`.

    Args:
        href: the COG (local path or URL GDAL reads).
        max_size: the longer side of the preview, px (the COG's overviews are read).
        colormap_name: a rio-tiler colormap.
        rescale: values mapped to the ends of the colormap (default: 2nd and 98th percentiles of
            the valid pixels; (0, 1) when there are none).

    Returns:
        PNG bytes, RGB (no alpha): width x height of the preview.

    Raises:
        InvalidInput: an unknown colormap.
    """
    from rio_tiler.colormap import apply_cmap, cmap
    from rio_tiler.io import Reader
    from rio_tiler.models import ImageData

    if colormap_name not in cmap.list():
        raise InvalidInput(f"colormap_name {colormap_name!r}: not a colormap (see /raster/colorMaps)")
    with Reader(href) as src:
        img = src.preview(indexes=1, max_size=max_size)
    valid = img.mask > 0
    values = np.ma.getdata(img.array[0]).astype("float64")
    valid &= np.isfinite(values)
    if rescale is None:
        rescale = tuple(np.percentile(values[valid], [2, 98])) if valid.any() else (0.0, 1.0)
        if rescale[0] >= rescale[1]:
            rescale = (rescale[0], rescale[0] + 1)
    scaled = img.rescale(in_range=(rescale,)).array.filled(0)
    rgb, _ = apply_cmap(scaled, cmap.get(colormap_name))
    rgb = rgb[:3].copy()
    rgb[:, ~valid] = np.array(NODATA_COLOUR, dtype=rgb.dtype)[:, None]
    return ImageData(rgb).render(add_mask=False, img_format="PNG")


def read_region(cogs: dict[str, dict[str, str]], times: dict[str, Any], bbox, *, bbox_crs: str = "EPSG:4326",
                variables: list[str] | None = None, max_side: int, max_bytes: int):
    """The outputs over ``bbox``: every period, the chosen variables.

    Args:
        cogs: ``{period label: {variable: href}}`` (:func:`output_cogs`).
        times: ``{period label: start}`` (the ``time`` coordinate).
        bbox: ``MINX,MINY,MAXX,MAXY`` in ``bbox_crs``.
        variables: None: all of them.
        max_side / max_bytes: the largest region, in pixels a side and bytes of values.

    Returns:
        ``xarray.Dataset`` of ``(time, y, x)`` variables in the outputs' CRS (``spatial_ref``),
        the COGs' dtypes with nodata as NaN for floats (``_FillValue`` encoded).

    Raises:
        InvalidInput: a bad bbox or variable; a region above the limits.
        NoData: the bbox does not meet the outputs.
    """
    import rioxarray
    import xarray as xr
    from rioxarray.exceptions import NoDataInBounds

    box = parse_bbox(bbox, allow_point=True)
    labels = list(cogs)
    known = list(cogs[labels[0]])
    names = [pick(known, v, "variable") for v in variables] if variables else known
    arrays: dict[str, list] = {v: [] for v in names}
    for label in labels:
        for var in names:
            da = rioxarray.open_rasterio(cogs[label][var], masked=True, mask_and_scale=False).squeeze("band", drop=True)
            try:
                arrays[var].append(da.rio.clip_box(*box, crs=bbox_crs, auto_expand=True))
            except NoDataInBounds:
                raise NoData(f"bbox {list(box)} ({bbox_crs}) does not meet the outputs") from None
    first = arrays[names[0]][0]
    ny, nx = first.sizes["y"], first.sizes["x"]
    size = sum(a.size * a.dtype.itemsize for v in names for a in arrays[v])
    if ny > max_side or nx > max_side or size > max_bytes:
        raise InvalidInput(
            f"region of {ny} x {nx} px x {len(names)} variable(s) x {len(labels)} period(s) ({size:,} bytes) exceeds "
            f"the limits ({max_side} px a side, STACUBE_MAX_PART_SIZE; {max_bytes:,} bytes, STACUBE_MAX_RESPONSE_SIZE): "
            "choose a smaller bbox or fewer variables")
    time = xr.DataArray(np.array([np.datetime64(str(times[lb])[:19]) for lb in labels], dtype="datetime64[ns]"),
                        dims="time", name="time")
    ds = xr.Dataset({v: xr.concat([a.load() for a in arrays[v]], dim=time) for v in names})
    ds = ds.assign_coords(period=("time", labels))
    return ds


def add_output_routes(app: FastAPI, owned, settings: Settings) -> None:
    """Add the preview and region routes to the jobs API.

    Args:
        owned: ``owned(request, job_id) -> job`` (raises NotFound for another caller's job).
    """

    @app.get("/{job_id}/preview.png", summary="A filled preview of one output: no-data pixels in magenta",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def preview(request: Request, job_id: str, period: str | None = Query(None, description="Period label."),
                variable: str | None = Query(None, description="Output variable."),
                colormap_name: str = Query("viridis", description="rio-tiler colormap."),
                rescale: str | None = Query(None, description="MIN,MAX (default: 2nd-98th percentiles)."),
                max_size: int = Query(PREVIEW_SIZE, ge=16, description="Longer side, px.")) -> Response:
        cogs = output_cogs(owned(request, job_id))
        if max_size > settings.max_part_size:
            raise InvalidInput(f"max_size={max_size} exceeds the limit of {settings.max_part_size} px "
                               "(STACUBE_MAX_PART_SIZE)")
        label = pick(cogs, period, "period")
        var = pick(cogs[label], variable, "variable")
        png = filled_preview(cogs[label][var], max_size=max_size, colormap_name=colormap_name,
                             rescale=parse_rescale(rescale))
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/{job_id}/region.nc", summary="The outputs over a bbox, as NetCDF",
             response_class=Response, responses={200: {"content": {"application/x-netcdf": {}}}})
    def region(request: Request, job_id: str,
               bbox: str = Query(..., description="MINX,MINY,MAXX,MAXY in bbox_crs."),
               bbox_crs: str = Query("EPSG:4326", description="CRS of bbox."),
               variables: str | None = Query(None, description="Comma-separated variables (default: all).")) -> Response:
        job = owned(request, job_id)
        cogs = output_cogs(job)
        times = {s["label"]: s["start"] for s in job["report"].get("steps") or []}
        names = [v.strip() for v in variables.split(",") if v.strip()] if variables else None
        ds = read_region(cogs, times, bbox, bbox_crs=check_crs(bbox_crs), variables=names,
                         max_side=settings.max_part_size, max_bytes=int(settings.max_response_size))
        ds.attrs.update({"title": f"stacube job {job_id}", "source": "stacube", "stacube:job": job_id,
                         "stacube:bbox": ",".join(str(v) for v in parse_bbox(bbox, allow_point=True)),
                         "stacube:bbox_crs": bbox_crs})
        name = SAFE_NAME.sub("-", job_id)
        return Response(to_netcdf(ds), media_type="application/x-netcdf",
                        headers={"Content-Disposition": f'attachment; filename="{name}-region.nc"'})
