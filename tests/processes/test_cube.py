"""The ``cube`` a process gets and what it may return, on a synthetic stack (no catalog)."""

from __future__ import annotations

import numpy as np
import pytest
from odc.geo.geobox import GeoBox

from stacube.algo.load import Stack
from stacube.algo.process import Output, ProcessFailed, cast_output, infer_outputs, run_execute, stack_dataset

GEOBOX = GeoBox.from_bbox((500000, 5000000, 500040, 5000030), "EPSG:32633", resolution=10)


def stack() -> Stack:
    rng = np.random.default_rng(1)
    shape = (3, GEOBOX.shape.y, GEOBOX.shape.x)
    red = rng.random(shape, dtype=np.float32)
    observed = np.ones(shape, bool)
    observed[0, 0, 0] = False
    clear = observed & (rng.random(shape) > 0.3)
    times = np.array(["2020-01-01", "2020-01-11", "2020-01-21"], dtype="datetime64[ns]")
    return Stack({"red": red}, observed, clear, times, ["a", "b", "c"], ["s2"] * 3, GEOBOX.shape.yx)


def test_the_cube_is_masked_physical_values_with_masks_coordinates_and_crs():
    s = stack()
    cube = stack_dataset(s, GEOBOX)
    assert cube["red"].dims == ("time", "y", "x") and cube["red"].dtype == np.float32
    assert np.array_equal(np.isnan(cube["red"].values), ~s.clear)  # NaN where not clear
    assert np.array_equal(cube["red"].values[s.clear], s.bands["red"][s.clear])
    assert cube["clear"].dtype == bool and cube["valid"].values.sum() == s.observed.sum()
    assert list(cube["item_id"].values) == ["a", "b", "c"] and cube["time"].dtype.kind == "M"
    assert cube.odc.geobox == GEOBOX and cube.odc.crs == "EPSG:32633"
    assert float(cube.x[0]) == 500005.0  # pixel centres


def test_results_as_dataset_dict_or_nothing():
    cube = stack_dataset(stack(), GEOBOX)
    mean = run_execute(lambda c: c[["red"]].mean("time"), cube, {})
    assert set(mean) == {"red"} and mean["red"].shape == (3, 4)
    assert set(run_execute(lambda c, k: {"m": c.red.max("time") * k}, cube, {"k": 2})) == {"m"}
    assert run_execute(lambda c: None, cube, {}) is None
    assert run_execute(lambda c: "empty", cube, {}) is None
    one = run_execute(lambda c: {"m": c.red.values[:1]}, cube, {})  # a leading axis of 1 is dropped
    assert one["m"].shape == (3, 4)


@pytest.mark.parametrize("fn, fragment", [
    (lambda c: 1 / 0, "ZeroDivisionError: division by zero"),
    (lambda c: [1, 2], "execute returned list"),
    (lambda c: {"m": np.zeros((2, 2))}, "output 'm' has shape (2, 2); expected (y, x) = (3, 4)"),
    (lambda c: {"m": c.red.values}, "output 'm' has shape (3, 3, 4)"),
])
def test_errors_carry_a_line_and_the_traceback(fn, fragment):
    with pytest.raises(ProcessFailed) as info:
        run_execute(fn, stack_dataset(stack(), GEOBOX), {})
    assert fragment in info.value.message
    if "Zero" in fragment:
        assert "1 / 0" in info.value.traceback


def test_output_types_and_casts():
    outs = infer_outputs({"f": np.zeros(2), "b": np.zeros(2, bool), "u": np.zeros(2, "uint16"),
                          "i": np.zeros(2, "int8")})
    assert outs == {"f": Output("float32"), "b": Output("uint8", 255), "u": Output("uint16", 65535),
                    "i": Output("int8", -128)}
    assert cast_output(np.array([1.7, np.nan]), Output("uint8", 255)).tolist() == [1, 255]
    assert np.isnan(cast_output(np.array([np.inf]), Output("float32", None))).tolist() == [False]
    assert cast_output(np.array([np.inf]), Output("float32", -9999)).tolist() == [-9999]
    with pytest.raises(ProcessFailed, match="outputs are numbers"):
        infer_outputs({"s": np.array(["a"])})
