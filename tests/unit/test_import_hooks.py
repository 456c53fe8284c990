"""stacube.core.imports: odc-geo without dask's import, with dask's answers once it is there."""

import subprocess
import sys

CODE = """
import sys
import numpy as np
import stacube
from stacube.core.imports import _Finder
import odc.geo.geobox
from odc.geo import _interop, math as geo_math
assert "dask" not in sys.modules, "odc.geo imported dask"
assert not any(isinstance(f, _Finder) for f in sys.meta_path), "the hook stayed after firing"
assert _interop.__loader__.path.endswith("_interop.py")
assert geo_math.is_dask_collection(np.zeros(2)) is False
geobox = odc.geo.geobox.GeoBox.from_bbox((0, 0, 10, 10), "EPSG:32633", resolution=1)
assert geobox.shape == (10, 10)
import dask.array as da
assert geo_math.is_dask_collection(da.zeros(2)) is True
assert geo_math.is_dask_collection(np.zeros(2)) is False
print("ok")
"""

BEFORE = """
import sys
import odc.geo  # before stacube: odc-geo as it is
import stacube
from odc.geo import math as geo_math
assert "dask" in sys.modules
import dask.array as da
assert geo_math.is_dask_collection(da.zeros(2)) is True
print("ok")
"""


def run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_odc_geo_loads_without_dask_and_asks_dask_once_imported():
    run(CODE)


def test_odc_geo_imported_before_stacube_is_left_alone():
    run(BEFORE)
