"""Mask cleanup (opening then dilation with disc footprints) on hand-made and random masks."""

import numpy as np
import pytest
from scipy import ndimage

from stacube.algo.masking import (
    cleanup_clear, cleanup_mask, dilate, disk, erode, halo, parse_mask_cleanup,
)
from stacube.errors import InvalidInput
from stacube.jobs.spec import build_spec


def test_opening_removes_a_speck_and_dilation_grows_a_cloud():
    mask = np.zeros((12, 12), dtype=bool)
    mask[2, 2] = True             # a 1-pixel speck
    mask[6:9, 6:9] = True         # a 3x3 cloud
    opened = cleanup_mask(mask, 1, 0)
    assert not opened[2, 2]       # the speck is gone
    assert opened[7, 7] and opened[6, 7] and opened[7, 6]  # the cloud's cross survives a disc of 1
    grown = cleanup_mask(mask, 0, 1)
    expected = mask.copy()
    expected[5:10, 6:9] = True    # a disc of radius 1 is a plus: grow by one pixel N/S/E/W
    expected[6:9, 5:10] = True
    expected[1:4, 2] = True
    expected[2, 1:4] = True
    assert np.array_equal(grown, expected)
    both = cleanup_mask(mask, 1, 2)
    assert not both[2, 2] and both[7, 10] and both[4, 7] and not both[0, 0]


def test_disk_is_skimage_disk():
    assert disk(1).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert disk(2).sum() == 13 and disk(3).sum() == 29


@pytest.mark.parametrize("radius", [1, 2, 3, 5, 8])
def test_dilation_and_erosion_equal_scipy_ndimage(radius):
    rng = np.random.default_rng(radius)
    mask = ndimage.gaussian_filter(rng.random((3, 70, 90)), (0, 3, 3)) > 0.52
    mask[1] |= rng.random((70, 90)) < 0.02
    for t in range(3):
        assert np.array_equal(dilate(mask, radius)[t], ndimage.binary_dilation(mask[t], disk(radius)))
        assert np.array_equal(erode(mask, radius)[t],
                              ndimage.binary_erosion(mask[t], disk(radius), border_value=1))
    opened = ndimage.binary_dilation(ndimage.binary_erosion(mask[0], disk(2), border_value=1), disk(2))
    assert np.array_equal(cleanup_mask(mask[0], 2, radius), ndimage.binary_dilation(opened, disk(radius)))


def test_a_tile_with_its_halo_matches_the_whole_image():
    rng = np.random.default_rng(1)
    mask = ndimage.gaussian_filter(rng.random((200, 200)), 4) > 0.5
    mask |= rng.random((200, 200)) < 0.01
    cleanup = (2, 3)
    whole = cleanup_mask(mask, *cleanup)
    h = halo(cleanup)
    assert h == 7
    y0, y1, x0, x1 = 60, 120, 80, 150
    tile = cleanup_mask(mask[y0 - h:y1 + h, x0 - h:x1 + h], *cleanup)[h:-h, h:-h]
    assert np.array_equal(tile, whole[y0:y1, x0:x1])
    no_halo = cleanup_mask(mask[y0:y1, x0:x1], *cleanup)
    assert not np.array_equal(no_halo, whole[y0:y1, x0:x1])  # without it the edges differ


def test_cleanup_leaves_unobserved_pixels_alone():
    observed = np.ones((1, 9, 9), dtype=bool)
    observed[0, :, 7:] = False               # nodata strip (scene edge)
    clear = observed.copy()
    clear[0, 4, 2] = False                   # one cloudy pixel: removed by the opening
    clear[0, 0:3, 0:3] = False               # a cloud: kept, then grown
    out = cleanup_clear(observed, clear, (1, 1))
    assert out[0, 4, 2]                      # speck cleaned away: clear again
    assert not out[0, 3, 1] and not out[0, 1, 3]  # the cloud grew
    assert not out[0, :, 7:].any()           # nodata stays not clear
    assert out[0, 4, 6]                      # ... and does not grow into its neighbours
    assert cleanup_clear(observed, clear, None) is clear


@pytest.mark.parametrize("value, expected", [("2,3", (2, 3)), ([1, 0], (1, 0)), ("0,0", None), (None, None)])
def test_parse_mask_cleanup(value, expected):
    assert parse_mask_cleanup(value) == expected


@pytest.mark.parametrize("value", ["2", "a,b", "-1,2", "2.5,1", "1,2,3", "99,1"])
def test_bad_mask_cleanup_is_invalid_input(value):
    with pytest.raises(InvalidInput, match="mask-cleanup"):
        parse_mask_cleanup(value)
    with pytest.raises(InvalidInput, match="mask-cleanup"):
        build_spec(collections=["c"], bbox="0,0,1,1", datetime="2020", method="median", mask_cleanup=value)


def test_spec_carries_the_cleanup_and_keeps_old_job_ids():
    base = dict(collections=["c"], bbox="0,0,1,1", datetime="2020", method="median")
    assert build_spec(**base, mask_cleanup="2,3").mask_cleanup == (2, 3)
    assert build_spec(**base, mask_cleanup="0,0").job_id() == build_spec(**base).job_id()
    assert build_spec(**base, mask_cleanup="2,3").job_id() != build_spec(**base).job_id()
    assert build_spec(**{**base, "method": "p25"}).method == "p25"
    for bad in ("p101", "p-5", "P25x", "geomean"):
        with pytest.raises(InvalidInput, match="unknown method"):
            build_spec(**{**base, "method": bad})
