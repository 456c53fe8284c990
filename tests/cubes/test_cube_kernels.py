"""Cube kernels, grids and parameters: pure functions, no database."""

import math

import numpy as np
import pytest

from stacube.algo.downsample import downsample_max, downsample_mean, downsample_nearest
from stacube.algo.observations import CLEAR, NO_OBSERVATION, NOT_CLEAR, merge_observations
from stacube.core.geobox import NativeGrid
from stacube.core.grids import EASE2_LOWER_LEFT, WEBMERCATOR_RES0, parse_grid, webmercator_zoom
from stacube.cubes.spec import build_cube_spec
from stacube.errors import InvalidInput


def test_merge_prefers_the_first_clear_slice_and_flags_the_rest():
    # 3 slices, 2 steps: slices 0 and 1 are the same solar day, slice 2 the next; 1 x 4 pixels
    red = np.array([[[0.1, 0.2, 0.3, 0.4]], [[0.5, 0.6, 0.7, 0.8]], [[0.9, 1.0, 1.1, 1.2]]], dtype=np.float32)
    observed = np.array([[[1, 1, 0, 0]], [[1, 1, 1, 0]], [[1, 0, 0, 0]]], dtype=bool)
    clear = np.array([[[0, 1, 0, 0]], [[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=bool)
    bands, quality = merge_observations({"red": red}, observed, clear, np.array([0, 0, 1]), 2)
    assert bands["red"].dtype == np.float32 and bands["red"].shape == (2, 1, 4)
    # pixel 0: slice 0 cloudy, slice 1 clear -> slice 1; pixel 1: slice 0 clear first
    assert np.allclose(bands["red"][0, 0, :2], [0.5, 0.2])
    assert np.isnan(bands["red"][0, 0, 2:]).all() and np.isnan(bands["red"][1]).all()
    assert quality[0, 0].tolist() == [CLEAR, CLEAR, NOT_CLEAR, NO_OBSERVATION]
    assert quality[1, 0].tolist() == [NOT_CLEAR, NO_OBSERVATION, NO_OBSERVATION, NO_OBSERVATION]


def test_merge_drops_slices_outside_the_steps():
    red = np.ones((2, 2, 2), dtype=np.float32)
    ok = np.ones((2, 2, 2), dtype=bool)
    bands, quality = merge_observations({"red": red}, ok, ok, np.array([-1, 0]), 1)
    assert (quality == CLEAR).all() and (bands["red"] == 1).all()
    bands, quality = merge_observations({"red": red}, ok, ok, np.array([-1, -1]), 1)
    assert (quality == NO_OBSERVATION).all() and np.isnan(bands["red"]).all()


def test_pyramid_reductions():
    a = np.array([[[1, 2, 5], [3, np.nan, 7]], [[np.nan, np.nan, 1], [np.nan, np.nan, 1]]], dtype=np.float32)
    mean = downsample_mean(a)
    assert mean.shape == (2, 1, 2) and mean.dtype == np.float32
    assert mean[0, 0].tolist() == [2.0, 6.0] and np.isnan(mean[1, 0, 0]) and mean[1, 0, 1] == 1
    q = np.array([[[0, 1, 2, 0], [0, 0, 0, 0]]], dtype=np.uint8)
    assert downsample_max(q).tolist() == [[[1, 2]]]
    assert downsample_nearest(np.arange(16, dtype=np.uint16).reshape(1, 4, 4)).tolist() == [[[0, 2], [8, 10]]]


def test_native_grid_snaps_the_domain_to_whole_tiles_on_source_pixel_edges():
    grid = parse_grid("native", native=NativeGrid("EPSG:32633", (10.0, -10.0), (465181.0, 5080254.0)))
    assert grid.anchor == (1.0, 4.0)
    gb = grid.domain((465500.0, 5075000.0, 470100.0, 5079000.0), "EPSG:32633", 512)
    assert gb.shape.y % 512 == 0 and gb.shape.x % 512 == 0
    assert (gb.affine.c - 1.0) % 5120 == pytest.approx(0) and (gb.affine.f - 4.0) % 5120 == pytest.approx(0)
    box = gb.extent.boundingbox
    assert box.left <= 465500 and box.right >= 470100 and box.bottom <= 5075000 and box.top >= 5079000
    # two bboxes in the same tiles give the same domain: parallel writers share one tiling
    assert grid.domain((465600.0, 5075100.0, 470000.0, 5078900.0), "EPSG:32633", 512) == gb


def test_named_grids():
    wm = parse_grid("webmercator-z14")
    assert wm.crs == "EPSG:3857" and wm.resolution == pytest.approx(WEBMERCATOR_RES0 / 2 ** 14)
    gb = wm.domain((14.55, 45.86, 14.57, 45.88), "EPSG:4326", 512)
    # a 512 px tile is one WebMercatorQuad tile of zoom 13: its corner is on that tile grid
    size13 = 2 * math.pi * 6378137 / 2 ** 13
    assert ((gb.affine.c + math.pi * 6378137) / size13) == pytest.approx(round((gb.affine.c + math.pi * 6378137) / size13))
    auto = parse_grid("webmercator", native=NativeGrid("EPSG:32633", (10.0, -10.0), (0, 0)), centre=(14.5, 45.9))
    assert auto.name == "webmercator-z14" and webmercator_zoom(10.0, 45.9) == 14
    ea = parse_grid("equal-area-30m")
    assert ea.crs == "EPSG:6933" and ea.resolution == 30.0 and ea.anchor == EASE2_LOWER_LEFT
    assert parse_grid("equal-area-10km").resolution == 10000.0
    with pytest.raises(InvalidInput, match="unknown grid"):
        parse_grid("utm-everywhere")
    with pytest.raises(InvalidInput, match="no CRS"):
        parse_grid("native", native=None)


def test_spec_validation_messages():
    ok = dict(name="c1", collections=["x"], datetime="2020-01-01/2020-12-31")
    spec = build_cube_spec(**ok)
    assert spec.mode == "observations" and spec.chunk == 128 and spec.time_chunk == 32 and spec.tile_size == 512
    assert build_cube_spec(**ok, method="median", period="p1m").period == "P1M"
    cases = [
        (dict(name="Bad Name"), "name"),
        (dict(period="P1M"), "needs --method"),
        (dict(method="nope"), "unknown method"),
        (dict(grid="mars"), "unknown grid"),
        (dict(tile_size=500), "not a multiple"),
        (dict(datetime="2020-01-01/.."), "both ends"),
        (dict(bbox="1,2,3"), "bbox"),
        (dict(indices=["NOPE"]), "unknown index"),
    ]
    for extra, message in cases:
        with pytest.raises(InvalidInput, match=message):
            build_cube_spec(**{**ok, **extra})
