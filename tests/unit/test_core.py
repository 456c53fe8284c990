"""The shared foundation (stacube.core): one parser per idea, used by jobs, cubes and services."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from stacube.core.bbox import parse_bbox
from stacube.core.crs import check_crs, crs_text, same_crs
from stacube.core.geobox import NativeGrid, geobox_from_doc, geobox_to_doc, item_crs, native_grid
from stacube.core.grids import check_grid_name, parse_grid
from stacube.core.methods import check_method, output_variables, percentile_of
from stacube.core.period import check_period, make_periods
from stacube.core.times import item_datetime, parse_time, solar_day, to_datetime64
from stacube.cubes.spec import build_cube_spec
from stacube.errors import InvalidInput
from stacube.jobs.spec import build_spec

UTM = "EPSG:32633"


def test_bbox_points_only_where_allowed():
    assert parse_bbox("1,2,1,2", allow_point=True) == (1.0, 2.0, 1.0, 2.0)
    with pytest.raises(InvalidInput, match="less than"):
        parse_bbox("1,2,1,2")
    with pytest.raises(InvalidInput, match="finite"):
        parse_bbox([0, 0, float("inf"), 1])


def test_time_pairs_and_items_parse_once():
    start, end = parse_time(("2020-01", np.datetime64("2020-03-05T12:00")))
    assert start == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert end == datetime(2020, 3, 5, 12, tzinfo=timezone.utc)
    with pytest.raises(InvalidInput, match="end is before start"):
        parse_time(("2020-02", "2020-01"))
    item = {"id": "a", "properties": {"datetime": "2018-01-01T23:30:00+02:00"}}
    assert item_datetime(item) == datetime(2018, 1, 1, 21, 30, tzinfo=timezone.utc)
    ranged = {"id": "b", "properties": {"datetime": None, "start_datetime": "2018-02-01T00:00:00Z"}}
    assert item_datetime(ranged).month == 2
    assert to_datetime64("2018-01-01T23:30:00+02:00") == np.datetime64("2018-01-01T21:30:00", "ns")
    # 23:30 UTC at 15 E is already the next solar day
    assert solar_day(datetime(2018, 1, 1, 23, 30, tzinfo=timezone.utc), 15.0) == "2018-01-02"


def test_crs_is_an_epsg_code_when_there_is_one_else_wkt():
    assert check_crs("32633") == UTM and crs_text("epsg:32633") == UTM
    local = "+proj=tmerc +lat_0=0 +lon_0=17 +k=0.9996 +x_0=500000 +ellps=GRS80 +units=m +no_defs"
    assert crs_text(local).startswith(("PROJCRS", "PROJCS"))
    assert same_crs(UTM, "EPSG:32633") and not same_crs(UTM, "EPSG:4326")


def test_periods_and_methods():
    assert check_period("p16d") == "P16D"
    start = datetime(2020, 1, 31, tzinfo=timezone.utc)
    end = datetime(2020, 4, 15, tzinfo=timezone.utc)
    periods = make_periods("P1M", start, end)
    assert [p.start.date().isoformat() for p in periods] == ["2020-01-31", "2020-02-29", "2020-03-29"]
    assert periods[-1].end == end
    assert percentile_of("p100") == 100.0 and percentile_of("p101") is None
    assert check_method("p5") == "p5"
    assert output_variables(["red"], ["NDVI"], "best-pixel") == ["red", "NDVI", "provenance", "clear_count",
                                                                   "valid_count"]
    assert "provenance" not in output_variables(["red"], [], "median")


def test_native_grid_reads_every_projection_flavour():
    transform = [10, 0, 465181.0, 0, -10, 5080254.0]
    for fields in ({"proj:code": UTM}, {"proj:epsg": 32633}, {"proj:wkt2": _wkt(UTM)}):
        item = {"id": "i", "properties": {"datetime": "2020-01-01T00:00:00Z"},
                "assets": {"B04": {"href": "x.tif", "proj:transform": transform, **fields}}}
        grid = native_grid([item], "B04")
        assert grid is not None and same_crs(grid.crs, UTM), fields
        assert grid.resolution == (10.0, -10.0) and grid.origin == (465181.0, 5080254.0)
    assert item_crs({"properties": {}, "assets": {}}, "B04") is None


def test_geobox_json_round_trip():
    grid = parse_grid("native", native=NativeGrid(UTM, (10.0, -10.0), (465181.0, 5080254.0)))
    geobox = grid.domain((465500.0, 5075000.0, 470100.0, 5079000.0), UTM, 256)
    assert geobox_from_doc(geobox_to_doc(geobox)) == geobox
    assert check_grid_name(" WebMercator-Z12 ") == "webmercator-z12"


def test_epsg_grids_are_anchored_at_their_origin():
    grid = parse_grid(check_grid_name("EPSG:5070/3000"))
    assert (grid.crs, grid.resolution, grid.anchor) == ("EPSG:5070", 3000.0, (0.0, 0.0))
    geobox = grid.domain((1700000.0, 2100000.0, 1850000.0, 2250000.0), "EPSG:5070", 64)
    assert geobox.affine.c == 1536000.0 and geobox.affine.f == 2304000.0 and geobox.shape == (128, 128)
    assert parse_grid("epsg:4326/1e-05@0.5,-0.25").anchor == (0.5, -0.25)
    for bad in ("epsg:99999/30", "epsg:5070/0", "epsg:5070/30@1"):
        with pytest.raises(InvalidInput):
            parse_grid(check_grid_name(bad))


def test_jobs_and_cubes_validate_shared_parameters_alike():
    job = build_spec(collections=["a", "a"], bbox="1,2,3,4", datetime="2018", method="median",
                     indices=["ndvi", "NDVI"], bands=["red", "red"])
    cube = build_cube_spec(name="c", collections=["a", "a"], datetime="2018/2019", indices=["ndvi", "NDVI"],
                           bands=["red", "red"])
    for spec in (job, cube):
        assert spec.collections == ["a"] and spec.indices == ["NDVI"] and spec.bands == ["red"]
    for bad, fragment in (({"bbox": "1,2,300,4"}, "longitude/latitude"), ({"period": "P0M"}, "period"),
                          ({"method": "nearest"}, "unknown method")):
        with pytest.raises(InvalidInput, match=fragment):
            build_spec(**{**dict(collections=["a"], bbox="1,2,3,4", datetime="2018", method="median"), **bad})
        with pytest.raises(InvalidInput, match=fragment):
            build_cube_spec(**{**dict(name="c", collections=["a"], datetime="2018/2019", bbox="1,2,3,4",
                                      method="median"), **bad})


def _wkt(code: str) -> str:
    from pyproj import CRS

    return CRS.from_user_input(code).to_wkt()


def test_a_process_shared_object_lives_from_the_first_block_to_the_last():
    import threading

    from stacube.core.shared import ProcessShared

    closed = []
    shared = ProcessShared(closed.append)
    made = []

    def make():
        made.append(object())
        return made[-1]

    assert shared.current is None
    inside = threading.Event()
    release = threading.Event()

    def other_thread():
        with shared.use(make) as obj:
            seen.append(obj)
            inside.set()
            release.wait(10)

    seen = []
    worker = threading.Thread(target=other_thread)
    with shared.use(make) as first:
        worker.start()
        inside.wait(10)
        with shared.use(make) as nested:
            assert nested is first and seen == [first] and shared.current is first
    assert shared.current is first and closed == []  # the other thread still uses it
    release.set()
    worker.join(10)
    assert shared.current is None and closed == [first] and len(made) == 1
    with shared.use(make) as again:
        assert again is not first and len(made) == 2
    assert closed == [first, again]
