"""Time series from a cube and from the source items: same answers, flags, shares, formats."""

import csv
import io
import json
import math

import numpy as np
import pytest

from conftest import PRIVATE, S2_DATES
from stacube.cubes.build import create_cube
from stacube.cubes.spec import build_cube_spec
from stacube.cubes.timeseries import from_items, parse_geometry, timeseries
from stacube.errors import InvalidInput, NoData

POINT = dict(lon=14.5581, lat=45.8702)
POLYGON = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
    [14.5550, 45.8680], [14.5610, 45.8680], [14.5610, 45.8730], [14.5550, 45.8730], [14.5550, 45.8680]]]}}
CLOUDY = {"2015-07-31", "2015-08-20"}


@pytest.fixture(scope="module")
def cube(private_s2, cube_settings):
    spec = build_cube_spec(name="t-ts", collections=[PRIVATE], datetime=S2_DATES, bands=["red", "nir"])
    return create_cube(spec, cube_settings, fill=False, replace=True).definition


def same_rows(a, b):
    assert [r["datetime"] for r in a] == [r["datetime"] for r in b]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key, value in ra.items():
            if isinstance(value, float):
                assert (math.isnan(value) and math.isnan(rb[key])) or value == pytest.approx(rb[key], abs=1e-6), key
            else:
                assert value == rb[key], key


def test_point_series_from_the_cube_equals_the_items(cube, cube_settings):
    from_cube = timeseries(cube_settings, cube="t-ts", **POINT, indices=["NDVI"], bands=["red", "nir"])
    geom, kind = parse_geometry(**POINT)
    direct = from_items(cube_settings, [PRIVATE], geom=geom, kind=kind, bands=["red", "nir"], indices=["NDVI"],
                        like=cube)
    native = timeseries(cube_settings, collection=PRIVATE, source="items", **POINT, indices=["NDVI"],
                        bands=["red", "nir"])
    assert from_cube.source == "cube" and direct.source == "items" and native.source == "items"
    same_rows(from_cube.rows, direct.rows)
    assert len(from_cube.rows) == 5
    for row in from_cube.rows:
        cloudy = row["datetime"][:10] in CLOUDY
        assert row["status"] == ("cloud" if cloudy else "clear")
        assert row["pixel_count"] == 1 and row["valid_share"] == 1.0
        assert math.isnan(row["NDVI"]) == cloudy
        if not cloudy:
            assert row["NDVI"] == pytest.approx((row["nir"] - row["red"]) / (row["nir"] + row["red"]), abs=1e-6)
            assert 0 < row["red"] < 0.3
    # the native-grid read of the items agrees on which dates are clear
    assert [r["status"] for r in native.rows] == [r["status"] for r in from_cube.rows]


def test_polygon_series_means_shares_and_pixel_count(cube, cube_settings):
    from odc.geo.geom import Geometry
    from shapely.geometry import Point, shape

    ts = timeseries(cube_settings, cube="t-ts", geometry=POLYGON, indices=["NDVI"])
    geom, kind = parse_geometry(geometry=POLYGON)
    assert kind == "polygon"
    same_rows(ts.rows, from_items(cube_settings, [PRIVATE], geom=geom, kind=kind, indices=["NDVI"], like=cube).rows)
    # independent pixel count: pixel centres of the cube grid inside the polygon
    utm = Geometry(shape(POLYGON["geometry"]), "EPSG:4326").to_crs(cube.geobox.crs).geom
    xs, ys = cube.geobox.coordinates["x"].values, cube.geobox.coordinates["y"].values
    near = [(x, y) for x in xs if utm.bounds[0] - 20 < x < utm.bounds[2] + 20
            for y in ys if utm.bounds[1] - 20 < y < utm.bounds[3] + 20]
    inside = sum(utm.contains(Point(x, y)) for x, y in near)
    assert ts.rows[0]["pixel_count"] == inside > 1000
    for row in ts.rows:
        cloudy = row["datetime"][:10] in CLOUDY
        assert row["clear_share"] == (0.0 if cloudy else 1.0) and row["valid_share"] == 1.0
        assert row["clear_count"] == (0 if cloudy else inside)
    assert 0.3 < ts.rows[0]["NDVI"] < 0.9


def test_auto_source_uses_a_cube_when_one_holds_the_geometry(cube, cube_settings):
    auto = timeseries(cube_settings, collection=PRIVATE, **POINT, indices=["NDVI"])
    assert auto.source == "cube" and auto.cube is not None
    elsewhere = timeseries(cube_settings, collection="sentinel-2-l1c-eolearn-sample", **POINT, indices=["NDVI"])
    assert elsewhere.source == "items"
    same_rows([{k: r[k] for k in ("datetime", "NDVI", "status")} for r in auto.rows],
              [{k: r[k] for k in ("datetime", "NDVI", "status")} for r in
               timeseries(cube_settings, cube="t-ts", **POINT, indices=["NDVI"]).rows])
    with pytest.raises(NoData, match="no cube"):
        timeseries(cube_settings, collection="sentinel-2-l1c-eolearn-sample", **POINT, source="cube")


def test_csv_and_json_formats(cube, cube_settings):
    ts = timeseries(cube_settings, cube="t-ts", **POINT, indices=["NDVI"], time="2015-07-01/2015-08-31")
    rows = list(csv.DictReader(io.StringIO(ts.to_csv())))
    assert list(rows[0]) == ["datetime", "NDVI", "status", "clear_share", "valid_share", "clear_count",
                             "valid_count", "pixel_count"]
    assert len(rows) == 4  # the September scene is outside the range
    assert rows[1]["status"] == "cloud" and rows[1]["NDVI"] == ""
    doc = json.loads(json.dumps(ts.to_json()))  # strict JSON: NaN became null
    assert doc["source"] == "cube" and doc["kind"] == "point" and doc["units"] == {"NDVI": "1"}
    assert doc["series"][1]["NDVI"] is None and isinstance(doc["series"][0]["NDVI"], float)
    frame = ts.to_frame()
    assert list(frame.index.year) == [2015] * 4


def test_bad_requests(cube, cube_settings):
    cases = [
        (dict(cube="t-ts"), "give lon and lat"),
        (dict(cube="t-ts", lon=1, lat=2, geometry=POLYGON), "not both"),
        (dict(cube="t-ts", lon=200, lat=2), "outside longitude"),
        (dict(cube="t-ts", geometry={"type": "LineString", "coordinates": [[0, 0], [1, 1]]}), "LineString"),
        (dict(cube="t-ts", geometry={"type": "FeatureCollection", "features": []}), "exactly one"),
        (dict(cube="t-ts", geometry="{oops"), "not valid JSON"),
        (dict(cube="t-ts", **POINT, source="elsewhere"), "use auto"),
        (dict(cube="t-ts", **POINT, bands=["swir16"]), "no band"),
        (dict(**POINT), "name a collection or a cube"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidInput, match=message):
            timeseries(cube_settings, **kwargs)
    with pytest.raises(NoData, match="outside cube"):
        timeseries(cube_settings, cube="t-ts", lon=0.0, lat=0.0)
    assert np.isfinite(timeseries(cube_settings, cube="t-ts", **POINT).rows[0]["red"])
