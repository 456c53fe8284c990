"""Percentiles, geometric median, medoid and max-NDVI on small hand-computed stacks."""

import numpy as np
import pytest

from stacube.algo import methods
from stacube.algo.composite import composite
from stacube.core.indices import get_index
from stacube.core.methods import percentile_of

T = np.array(["2020-01-10", "2020-02-01", "2020-03-15", "2020-04-20", "2020-05-05"], dtype="datetime64[ns]")
DOY = [10, 32, 75, 111, 126]


def ones(t, y=1, x=1):
    return np.ones((t, y, x), dtype=bool)


# -- percentiles ------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [0, 10, 25, 50, 73, 90, 100])
def test_percentiles_match_numpy_on_the_clear_observations(q):
    rng = np.random.default_rng(q)
    stack = rng.integers(1, 1000, size=(9, 30, 40)).astype(np.uint16)
    clear = rng.random((9, 30, 40)) < 0.6
    clear[:, 0, 0] = False  # a pixel with no clear observation
    got = methods.percentiles({"v": stack}, clear, q=q, threads=2)["v"]
    expected = np.full((30, 40), np.nan)
    for y in range(30):
        for x in range(40):
            values = stack[clear[:, y, x], y, x]
            if values.size:
                expected[y, x] = np.percentile(values.astype(np.float64), q)
    assert got.dtype == np.float32
    assert np.isnan(got[0, 0])
    assert np.allclose(got, expected, equal_nan=True, rtol=1e-6, atol=1e-4)


def test_percentile_by_hand_and_through_composite():
    # clear values 10, 20, 40, 80 (cloudy 1000 and nodata 0 ignored): rank 0.25*3 = 0.75 -> 17.5
    stack = np.array([10, 1000, 20, 0, 40, 80], dtype=np.uint16).reshape(6, 1, 1)
    clear = np.array([1, 0, 1, 1, 1, 1], dtype=bool).reshape(6, 1, 1)
    times = np.arange(6).astype("datetime64[D]").astype("datetime64[ns]")
    out = composite({"b": stack}, clear, clear, method="p25", times=times, nodata={"b": 0})
    assert out["b"][0, 0] == pytest.approx(17.5)
    assert out["clear_count"][0, 0] == 5 and "provenance" not in out
    p90 = composite({"b": stack}, clear, clear, method="p90", times=times, nodata={"b": 0})["b"][0, 0]
    assert p90 == pytest.approx(np.percentile([10, 20, 40, 80], 90))
    assert percentile_of("p05") == 5.0 and percentile_of("median") is None
    with pytest.raises(ValueError):
        methods.percentiles({"b": stack}, clear, q=101)


# -- medoid -----------------------------------------------------------------------------------
def test_medoid_picks_the_central_observation_among_clear_ones():
    # 2 bands, 5 dates. Pixel 0: points (0,0) (1,1) (10,10) (1.2,0.9) (0.9,1.1): (1,1) is central.
    # Pixel 1: same, but the central one (t1) is cloudy: the next most central clear one (t4).
    red = np.array([0, 1, 10, 1.2, 0.9], dtype=np.float32)
    nir = np.array([0, 1, 10, 0.9, 1.1], dtype=np.float32)
    bands = {"red": np.stack([red, red], -1)[:, None, :], "nir": np.stack([nir, nir], -1)[:, None, :]}
    clear = ones(5, 1, 2)
    clear[1, 0, 1] = False
    chosen = methods.medoid_choice(bands, clear)
    assert chosen.tolist() == [[1, 4]]
    # brute force: sum of distances to the other clear observations
    pts = np.stack([red, nir], 1)
    ok = clear[:, 0, 1]
    cost = [np.linalg.norm(pts[ok] - pts[i], axis=1).sum() if ok[i] else np.inf for i in range(5)]
    assert int(np.argmin(cost)) == 4
    out = composite(bands, clear, clear, method="medoid", times=T)
    assert out["red"][0].tolist() == pytest.approx([1.0, 0.9])
    assert out["provenance"][0].tolist() == [DOY[1], DOY[4]]


def test_medoid_with_no_clear_observation_is_empty():
    bands = {"b": np.arange(3, dtype=np.uint16).reshape(3, 1, 1) + 5}
    none = np.zeros((3, 1, 1), dtype=bool)
    out = composite(bands, ones(3), none, method="medoid", times=T[:3], nodata={"b": 0})
    assert out["b"][0, 0] == 0 and out["provenance"][0, 0] == -1 and out["b"].dtype == np.uint16


# -- max-NDVI ---------------------------------------------------------------------------------
def test_max_ndvi_picks_the_greenest_clear_observation():
    red = np.array([0.10, 0.05, 0.20, 0.04, 0.30], dtype=np.float32).reshape(5, 1, 1)
    nir = np.array([0.30, 0.40, 0.25, 0.50, 0.31], dtype=np.float32).reshape(5, 1, 1)
    blue = np.array([1, 2, 3, 4, 5], dtype=np.float32).reshape(5, 1, 1)
    ndvi = ((nir - red) / (nir + red))[:, 0, 0]
    assert int(np.argmax(ndvi)) == 3  # t3 is the greenest ...
    clear = ones(5)
    clear[3] = False                   # ... but cloudy: t1 is the greenest clear one
    out = composite({"blue": blue}, ones(5), clear, method="max-ndvi", times=T,
                    spectral={"red": red, "nir": nir, "blue": blue})
    assert out["blue"][0, 0] == 2.0 and out["provenance"][0, 0] == DOY[1]
    # the NDVI used is spyndex's formula
    assert np.allclose(methods.ndvi_stack({"red": red, "nir": nir})[:, 0, 0], ndvi)
    with pytest.raises(ValueError, match="nir"):
        composite({"blue": blue}, ones(5), clear, method="max-ndvi", times=T, spectral={"red": red})


# -- geometric median -------------------------------------------------------------------------
def _stack(t=7, ny=12, nx=9, bands=("blue", "red", "nir"), seed=3):
    rng = np.random.default_rng(seed)
    base = rng.random((len(bands), ny, nx), dtype=np.float32) * 0.3
    out = {b: (base[i] + rng.normal(0, 0.02, (t, ny, nx))).astype(np.float32) for i, b in enumerate(bands)}
    clear = rng.random((t, ny, nx)) < 0.7
    clear[:, 0, 0] = False
    return out, clear


def test_geomedian_equals_a_direct_geomad_call():
    from geomad import nangeomedian_pcm

    bands, clear = _stack()
    got = methods.geomedian(bands, clear, block_pixels=100)  # several row blocks
    x = np.stack([np.where(clear, bands[b], np.nan) for b in bands], 0).transpose(2, 3, 0, 1)
    direct = nangeomedian_pcm(np.ascontiguousarray(x, dtype=np.float32), eps=methods.GEOMEDIAN_EPS,
                              maxiters=methods.GEOMEDIAN_MAXITERS, num_threads=1)
    for j, name in enumerate(bands):
        assert np.array_equal(got[name], direct[:, :, j], equal_nan=True), name
    assert np.isnan(got["red"][0, 0])


def test_geomedian_lies_within_the_clear_observations():
    bands, clear = _stack(seed=8)
    got = methods.geomedian(bands, clear)
    for name, stack in bands.items():
        masked = np.ma.masked_array(stack, ~clear)
        lo, hi = masked.min(axis=0).filled(np.nan), masked.max(axis=0).filled(np.nan)
        inside = (got[name] >= lo - 1e-5) & (got[name] <= hi + 1e-5)
        assert inside[clear.any(0)].all(), name
        # cloudy values far away do not pull it: they are not observations
    cloudy = {k: np.where(clear, v, 50.0).astype(np.float32) for k, v in bands.items()}
    assert np.allclose(methods.geomedian(cloudy, clear)["red"], got["red"], equal_nan=True)


def test_geomedian_of_one_band_is_the_median():
    rng = np.random.default_rng(5)
    stack = rng.random((7, 6, 5), dtype=np.float32)
    got = methods.geomedian({"v": stack}, ones(7, 6, 5), eps=1e-8)["v"]
    assert np.allclose(got, np.median(stack, axis=0), atol=1e-5)


def test_geomedian_indices_come_from_the_median_bands():
    bands, clear = _stack(bands=("red", "nir"))
    ndvi = get_index("NDVI").compute({"red": bands["red"], "nir": bands["nir"]})
    out = composite({"red": bands["red"], "NDVI": ndvi}, clear, clear, method="geomedian", times=T[:1].repeat(7),
                    spectral=bands)
    gm = methods.geomedian(bands, clear)
    assert np.allclose(out["red"], gm["red"], equal_nan=True)
    expected = (gm["nir"] - gm["red"]) / (gm["nir"] + gm["red"])
    assert np.allclose(out["NDVI"], expected, equal_nan=True, atol=1e-6)
    assert set(out) == {"red", "NDVI", "clear_count", "valid_count"}


def test_geomedian_treats_nodata_and_missing_bands_as_no_observation():
    red = np.array([100, 200, 0, 300], dtype=np.uint16).reshape(4, 1, 1)
    nir = np.array([1000, 2000, 9999, 3000], dtype=np.uint16).reshape(4, 1, 1)
    got = methods.geomedian({"red": red, "nir": nir}, ones(4), nodata={"red": 0, "nir": 0})
    # t2 has red nodata: the geomedian of the 3 collinear points is the middle one
    assert got["red"][0, 0] == pytest.approx(200, abs=1e-2)
    assert got["nir"][0, 0] == pytest.approx(2000, abs=1e-1)


def test_unknown_methods_still_fail():
    with pytest.raises(ValueError, match="unknown method"):
        composite({"b": np.ones((2, 1, 1))}, ones(2), ones(2), method="p101", times=T[:2])
