"""Compositing kernels on small hand-computed stacks."""

import warnings

import numpy as np
import pytest

from stacube.algo.blocks import day_of_year
from stacube.algo.composite import choose, composite, selection_order
from stacube.algo.reduce import reduce_stack

# 4 slices of a 1x3 image. Pixel 0: clear at t0,t2; pixel 1: clear only at t1; pixel 2: never
# clear, observed (cloudy) at t1 and t3.
T = np.array(["2020-01-10", "2020-02-01", "2020-03-15", "2020-04-20"], dtype="datetime64[ns]")
DATA = np.array([[[10, 20, 30]], [[11, 21, 31]], [[12, 22, 32]], [[13, 23, 33]]], dtype=np.uint16)
CLEAR = np.array([[[1, 0, 0]], [[0, 1, 0]], [[1, 0, 0]], [[0, 0, 0]]], dtype=bool)
OBS = np.array([[[1, 0, 0]], [[1, 1, 1]], [[1, 1, 0]], [[1, 0, 1]]], dtype=bool)


def run(method, **kw):
    return composite({"b": DATA}, OBS, CLEAR, method=method, times=T, nodata={"b": 0}, **kw)


def test_most_recent_takes_the_latest_clear_observation():
    out = run("most-recent")
    assert out["b"][0].tolist() == [12, 21, 0]  # pixel 2 has no clear obs -> nodata
    assert out["provenance"][0].tolist() == [75, 32, -1]  # 2020-03-15 is day 75 (leap year)


def test_least_recent_takes_the_earliest_clear_observation():
    out = run("least-recent")
    assert out["b"][0].tolist() == [10, 21, 0]
    assert out["provenance"][0].tolist() == [10, 32, -1]


def test_best_pixel_follows_rank_then_falls_back_to_observations():
    # rank by clear ratio: t1 (0.9) > t3 (0.5) > t0 (0.2) > t2 (0.1)
    ratio = np.array([0.2, 0.9, 0.1, 0.5])
    out = run("best-pixel", clear_ratio=ratio)
    # pixel 0: first clear in rank order t1? no (not clear), t3? no, t0 yes -> 10
    # pixel 1: t1 clear -> 21; pixel 2: no clear; first observed in rank order: t1 -> 31
    assert out["b"][0].tolist() == [10, 21, 31]
    assert out["provenance"][0].tolist() == [10, 32, 32]


def test_best_pixel_ties_break_on_the_more_recent_date():
    order = selection_order("best-pixel", T, np.array([0.5, 0.5, 0.1, 0.5]))
    assert order.tolist() == [3, 1, 0, 2]


def test_median_and_mean_use_clear_observations_only():
    med = run("median")["b"][0]
    mean = run("mean")["b"][0]
    assert med[0] == pytest.approx(11.0)  # median of 10 and 12
    assert med[1] == pytest.approx(21.0)
    assert np.isnan(med[2])
    assert mean[0] == pytest.approx(11.0) and mean[1] == pytest.approx(21.0) and np.isnan(mean[2])
    assert "provenance" not in run("median")


def test_counts_are_per_pixel():
    out = run("median")
    assert out["clear_count"][0].tolist() == [2, 1, 0]
    assert out["valid_count"][0].tolist() == [4, 2, 2]
    assert out["clear_count"].dtype == np.uint16 and out["valid_count"].dtype == np.uint16


def test_median_odd_and_even_counts_match_numpy():
    rng = np.random.default_rng(1)
    stack = rng.integers(1, 1000, size=(9, 40, 50)).astype(np.uint16)
    clear = rng.random((9, 40, 50)) < 0.6
    got = reduce_stack({"v": stack}, clear, method="median", threads=2, block_bytes=300)["v"]
    expected = np.ma.median(np.ma.masked_array(stack, ~clear), axis=0).filled(np.nan)
    assert np.allclose(got, expected, equal_nan=True)
    got_mean = reduce_stack({"v": stack}, clear, method="mean", threads=1)["v"]
    assert np.allclose(got_mean, np.ma.masked_array(stack, ~clear).mean(axis=0).filled(np.nan), equal_nan=True)


def test_median_ignores_nodata_and_nan_values():
    stack = np.array([[[0.1]], [[np.nan]], [[0.3]], [[0.5]]], dtype=np.float32)
    clear = np.ones((4, 1, 1), dtype=bool)
    assert reduce_stack({"v": stack}, clear, method="median")["v"][0, 0] == pytest.approx(0.3)
    ints = np.array([[[0]], [[5]], [[7]]], dtype=np.uint16)
    assert reduce_stack({"v": ints}, np.ones((3, 1, 1), bool), method="median",
                        nodata={"v": 0})["v"][0, 0] == pytest.approx(6.0)


def test_median_of_values_at_the_dtype_maximum():
    stack = np.array([[[65535]], [[65535]], [[1]]], dtype=np.uint16)
    clear = np.array([[[1]], [[1]], [[0]]], dtype=bool)
    assert reduce_stack({"v": stack}, clear, method="median")["v"][0, 0] == 65535.0


def test_selection_keeps_dtype_and_float_uses_nan():
    out = composite({"f": DATA.astype(np.float32)}, OBS, CLEAR, method="most-recent", times=T)
    assert out["f"].dtype == np.float32 and np.isnan(out["f"][0, 2])
    assert run("most-recent")["b"].dtype == np.uint16


def test_choose_without_fallback_leaves_cloudy_pixels_empty():
    chosen = choose(OBS, CLEAR, np.array([1, 3, 0, 2]), fallback=False)
    assert chosen[0].tolist() == [0, 1, -1]


def test_day_of_year():
    assert day_of_year(np.array(["2021-01-01", "2021-12-31", "2020-12-31"], dtype="datetime64[ns]")).tolist() == [1, 365, 366]


def test_unknown_method_and_shape_mismatch():
    with pytest.raises(ValueError):
        run("no-such-method")
    with pytest.raises(ValueError):
        composite({"b": DATA[:2]}, OBS, CLEAR, method="median", times=T)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 20, 31, 40, 68])
def test_sorting_network_sorts(n):
    from stacube.algo.reduce import comparators

    rng = np.random.default_rng(n)
    block = rng.integers(0, 50, size=(n, 500)).astype(np.uint16)
    for a, b in comparators(n):
        block[a], block[b] = np.minimum(block[a], block[b]), np.maximum(block[a], block[b])
    assert np.all(np.diff(block.astype(int), axis=0) >= 0)
    # pruned to the smallest half: those positions are in order and hold the smallest values
    values = rng.random((n, 300))
    half = values.copy()
    top = n // 2
    for a, b in comparators(n, top):
        half[a], half[b] = np.minimum(half[a], half[b]), np.maximum(half[a], half[b])
    assert np.array_equal(half[:top + 1], np.sort(values, axis=0)[:top + 1])


DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64]


def masked_reference(stack, clear, nodata):
    """The clear observations as float64 with NaN elsewhere (the numpy reference)."""
    ok = clear & np.isfinite(stack.astype(np.float64))
    if nodata is not None:
        ok &= stack != nodata
    return np.where(ok, stack.astype(np.float64), np.nan)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", [2, 7, 20, 68])
def test_order_statistics_and_mean_equal_numpy(dtype, t):
    """Integer stacks are sorted in their own dtype, long series too; every percentile equals
    ``numpy.nanpercentile`` over the clear observations, the mean ``numpy.nanmean``."""
    rng = np.random.default_rng(t)
    top = 200 if np.dtype(dtype).kind in "ui" and np.dtype(dtype).itemsize == 1 else 3000
    stack = rng.integers(0, top, size=(t, 23, 37)).astype(dtype)
    clear = rng.random((t, 23, 37)) < 0.6
    clear[:, 0, :5] = False  # pixels without any observation
    if np.dtype(dtype).kind == "f":
        stack[rng.random(stack.shape) < 0.05] = np.nan
    reference = masked_reference(stack, clear, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels in the reference
        for q in (0, 10, 25, 50, 75, 90, 100):
            got = reduce_stack({"v": stack}, clear, method="percentile", q=q, nodata={"v": 0},
                               block_bytes=700, threads=2)["v"]
            expected = np.nanpercentile(reference, q, axis=0).astype(np.float32)
            assert np.array_equal(got, expected, equal_nan=True), q
        median = reduce_stack({"v": stack}, clear, method="median", nodata={"v": 0}, threads=1)["v"]
        assert np.array_equal(median, np.nanmedian(reference, axis=0).astype(np.float32), equal_nan=True)
        got = reduce_stack({"v": stack}, clear, method="mean", nodata={"v": 0}, threads=2, block_bytes=900)["v"]
        assert np.allclose(got, np.nanmean(reference, axis=0), equal_nan=True, rtol=1e-6)


def test_threads_and_block_sizes_give_the_same_result():
    rng = np.random.default_rng(5)
    stack = rng.integers(1, 60000, size=(33, 70, 90)).astype(np.uint16)
    clear = rng.random(stack.shape) < 0.5
    one = reduce_stack({"v": stack}, clear, method="median", threads=1)["v"]
    for threads, block in ((2, 64), (2, 5000), (3, 1 << 20)):
        assert np.array_equal(reduce_stack({"v": stack}, clear, method="median", threads=threads,
                                           block_bytes=block)["v"], one, equal_nan=True)


def test_selection_equals_a_numpy_loop():
    """best-pixel, most-recent and least-recent against a plain loop over the slices."""
    rng = np.random.default_rng(8)
    t, ny, nx = 30, 41, 57
    stack = rng.integers(1, 1000, size=(t, ny, nx)).astype(np.uint16)
    observed = rng.random((t, ny, nx)) < 0.8
    clear = observed & (rng.random((t, ny, nx)) < 0.3)
    times = np.datetime64("2020-01-01", "ns") + np.arange(t) * np.timedelta64(5, "D")
    ratio = clear.mean(axis=(1, 2))
    for method in ("best-pixel", "most-recent", "least-recent"):
        order = selection_order(method, times, ratio)
        first_clear = np.full((ny, nx), -1)
        first_observed = np.full((ny, nx), -1)
        for k in order[::-1]:  # the last assignment wins: the first slice in order
            first_clear = np.where(clear[k], k, first_clear)
            first_observed = np.where(observed[k], k, first_observed)
        expected = first_clear
        if method == "best-pixel":
            expected = np.where(first_clear >= 0, first_clear, first_observed)
        out = composite({"b": stack}, observed, clear, method=method, times=times, clear_ratio=ratio,
                        nodata={"b": 0}, threads=2)
        values = np.where(expected >= 0, np.take_along_axis(stack, np.maximum(expected, 0)[None], 0)[0], 0)
        assert np.array_equal(out["b"], values), method
        assert np.array_equal(choose(observed, clear, order, fallback=method == "best-pixel"), expected)
        assert np.array_equal(out["clear_count"], clear.sum(axis=0))
        assert np.array_equal(out["valid_count"], observed.sum(axis=0))


def test_integer_means_are_summed_exactly_and_never_overflow():
    """8/16-bit inputs sum in 32-bit integers while the series cannot overflow them, else in
    float64; either way the mean equals numpy's float64 mean."""
    from stacube.algo.reduce import mean as stack_mean, sum_dtype

    assert sum_dtype(np.dtype(np.uint16), 68) == np.uint32
    assert sum_dtype(np.dtype(np.int16), 68) == np.int32
    assert sum_dtype(np.dtype(np.uint16), 70_000) == np.float64  # 70,000 x 65,535 > 2**32 - 1
    assert sum_dtype(np.dtype(np.float32), 3) == np.float64
    stack = np.full((40, 3, 5), 65535, dtype=np.uint16)
    stack[::3] = 1
    clear = np.ones(stack.shape, dtype=bool)
    clear[:, 0, 0] = False
    expected = stack.astype(np.float64).mean(axis=0).astype(np.float32)
    expected[0, 0] = np.nan
    assert np.array_equal(stack_mean(stack, clear), expected, equal_nan=True)
    signed = np.full((40, 3, 5), -32768, dtype=np.int16)
    assert np.array_equal(stack_mean(signed, np.ones(signed.shape, dtype=bool)), np.full((3, 5), -32768, np.float32))


def test_compiled_loops_load_without_numbas_blas_probe_and_keep_its_answer():
    """numba's BLAS probe imports scipy.linalg (0.1-0.2 s); the kernels load without it, the
    probe's answer is kept, np.dot still compiles, and other threads import scipy.linalg as usual."""
    import subprocess
    import sys

    code = """
import sys, threading
from stacube.algo import reduce
probe = reduce._NoScipyLinalg()
seen = []
t = threading.Thread(target=lambda: seen.append(probe.find_spec("scipy.linalg")))
t.start(); t.join()
try:
    probe.find_spec("scipy.linalg")
    raise SystemExit("the probe's thread imported scipy.linalg")
except ImportError:
    pass
import numpy as np
jit = reduce.jit_loops()
jit.take(np.zeros(2, np.int16), np.zeros(4, np.int16), np.zeros(4, np.int16), 0, 4)  # a cached loop loads
assert "scipy.linalg" not in sys.modules, "scipy.linalg imported by the kernels' loading"
from numba.np import arraymath
import numba
assert arraymath._HAVE_BLAS is True
assert numba.njit(lambda a: np.dot(a, a))(np.ones(3)) == 3.0
assert "scipy.linalg" in sys.modules and seen == [None]
assert not any(isinstance(f, reduce._NoScipyLinalg) for f in sys.meta_path)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
