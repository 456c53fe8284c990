"""The plain script a skilled user writes instead of ``stacube composite``: rasterio reads every
COG, xarray (with bottleneck; numbagg off) masks and composites, rio-cogeo writes the COG.

Baseline of ``composite_job.py``; run as a process, like the CLI:
``python benchmarks/plain_composite.py MANIFEST.json --method median|best-pixel -o OUT.tif``
(the manifest lists each date's data and mask COGs, as the stacks of ``../shared/data`` do).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

parser = argparse.ArgumentParser()
parser.add_argument("manifest")
parser.add_argument("--method", choices=["median", "best-pixel"], required=True)
parser.add_argument("--band", default="NDVI")
parser.add_argument("--mask", default="CLM")
parser.add_argument("-o", "--output", required=True)
args = parser.parse_args()
xr.set_options(use_bottleneck=True, use_numbagg=False)

folder = Path(args.manifest).parent
items = sorted(json.loads(Path(args.manifest).read_text())["items"], key=lambda i: (i["datetime"], i["item_id"]))
values, masks = [], []
for item in items:
    with rasterio.open(folder / item["assets"][args.band]["file"]) as src:
        values.append(src.read(1))
        profile = src.profile
    with rasterio.open(folder / item["assets"][args.mask]["file"]) as src:
        masks.append(src.read(1))
times = np.array([np.datetime64(i["datetime"].rstrip("Z")) for i in items])
data = xr.DataArray(np.stack(values), dims=("time", "y", "x"), coords={"time": times})
mask = xr.DataArray(np.stack(masks), dims=("time", "y", "x"), coords={"time": times})
observed = (mask != 255) & data.notnull()
clear = observed & (mask == 0)

if args.method == "median":
    result = data.where(clear).median("time")
else:  # scenes ranked by clear share (ties: the more recent), first clear, else first observed
    ratio = clear.mean(("y", "x"))
    rank = np.lexsort((-np.arange(len(times)), -times.astype("datetime64[ns]").astype(np.int64), -ratio.values))
    ranked, ranked_clear, ranked_observed = data.isel(time=rank), clear.isel(time=rank), observed.isel(time=rank)
    first_clear = ranked.where(ranked_clear).bfill("time").isel(time=0)
    first_observed = ranked.where(ranked_observed).bfill("time").isel(time=0)
    result = first_clear.fillna(first_observed)

profile.update(dtype="float32", nodata=float("nan"), count=1, driver="GTiff")
with MemoryFile() as memfile:
    with memfile.open(**profile) as dst:
        dst.write(result.values.astype(np.float32), 1)
    cog_translate(memfile, args.output, cog_profiles.get("deflate"), in_memory=True, quiet=True)
