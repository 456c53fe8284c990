"""Scene folders of COGs as other people's tools write them, built from the real Landsat 8 sample.

Four Landsat 8 scenes of WRS-2 013/032 (data/samples/landsat8-c1-l1tp-newyork-gdalcubes) are
warped (nearest neighbour: every value is a recorded DN) onto one 3 km grid of EPSG:32618 whose
origin sits on the half-pixel lines of Landsat's 30 m grid (x = 531285, y = 4579215), written as
COGs with rio-cogeo, without the sample's tags, into folders named the ways USGS names them:

* ``LC80130322018031LGN00/B2.tif ...``: a pre-collection scene ID (year and day of year);
* ``LC08_L1TP_013032_20180421_20180502_01_T1/B2.tif ...``: a Collection 1 product ID;
* ``LC08_L1TP_013032_20180710_20180717_01_T1/LC08_..._T1_B2.TIF ...``: product ID on every file;
* ``scene-d/B2.tif ...``: no date in any name; the files carry ``TIFFTAG_DATETIME``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stacube_testing import SAMPLES

STACK = SAMPLES / "landsat8-c1-l1tp-newyork-gdalcubes"
BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "BQA")
CRS = "EPSG:32618"
RES = 3000.0
ORIGIN = (531285.0, 4579215.0)   # 17709.5 and 152640.5 Landsat 30 m pixels
SHAPE = (40, 48)                 # rows, columns
#: folder name, sample scene, file-name prefix, TIFFTAG_DATETIME
SCENES = (
    ("LC80130322018031LGN00", "LC08_L1TP_013032_20180131_20180207_01_T1", "", None),
    ("LC08_L1TP_013032_20180421_20180502_01_T1", "LC08_L1TP_013032_20180421_20180502_01_T1", "", None),
    ("LC08_L1TP_013032_20180710_20180717_01_T1", "LC08_L1TP_013032_20180710_20180717_01_T1",
     "LC08_L1TP_013032_20180710_20180717_01_T1_", None),
    ("scene-d", "LC08_L1TP_013032_20181201_20181211_01_T1", "", "2018:12:01 15:30:00"),
)
#: the acquisition time each folder must get
EXPECTED_DATETIMES = {
    "LC80130322018031LGN00": "2018-01-31T00:00:00Z",
    "LC08_L1TP_013032_20180421_20180502_01_T1": "2018-04-21T00:00:00Z",
    "LC08_L1TP_013032_20180710_20180717_01_T1": "2018-07-10T00:00:00Z",
    "scene-d": "2018-12-01T15:30:00Z",
}


def available() -> bool:
    return all((STACK / sample / "BQA.tif").exists() for _, sample, _, _ in SCENES)


def write_cog(path: Path, data: np.ndarray, profile: dict, tags: dict | None = None) -> Path:
    """A COG (rio-cogeo, deflate) of one band with the given profile and tags."""
    from rasterio.io import MemoryFile
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data, 1)
            if tags:
                dst.update_tags(**tags)
            if profile.get("scales"):
                dst.scales, dst.offsets = profile["scales"], profile["offsets"]
        with mem.open() as src:
            cog_translate(src, str(path), cog_profiles.get("deflate"), quiet=True, in_memory=True,
                          additional_cog_metadata=tags or None)
    return path


def build_scenes(root: Path) -> Path:
    """Write the scene folders under ``root`` (see the module docstring); returns ``root``."""
    import rasterio
    from affine import Affine
    from rasterio.warp import Resampling, reproject

    transform = Affine(RES, 0.0, ORIGIN[0], 0.0, -RES, ORIGIN[1])
    for folder, sample, prefix, stamp in SCENES:
        out = root / folder
        out.mkdir(parents=True, exist_ok=True)
        for band in BANDS:
            with rasterio.open(STACK / sample / f"{band}.tif") as src:
                data = np.full(SHAPE, src.nodata, dtype=src.dtypes[0])
                reproject(rasterio.band(src, 1), data, dst_transform=transform, dst_crs=CRS,
                          resampling=Resampling.nearest, dst_nodata=src.nodata)
                profile = {"driver": "GTiff", "dtype": src.dtypes[0], "count": 1, "height": SHAPE[0],
                           "width": SHAPE[1], "crs": CRS, "transform": transform, "nodata": src.nodata}
                if band != "BQA":
                    profile.update(scales=src.scales, offsets=src.offsets)
            suffix = ".TIF" if prefix else ".tif"
            write_cog(out / f"{prefix}{band}{suffix}", data, profile,
                      {"TIFFTAG_DATETIME": stamp} if stamp else None)
    return root
