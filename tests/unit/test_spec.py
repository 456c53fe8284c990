"""Job parameters: validation and one-line errors."""

from datetime import datetime, timezone

import pytest

from stacube.errors import InvalidInput
from stacube.core.bbox import parse_bbox
from stacube.core.crs import check_crs
from stacube.core.times import parse_datetime_range
from stacube.jobs.spec import build_spec

BASE = dict(collections=["c"], bbox="0,0,1,1", datetime="2020-01-01/2020-12-31", method="median")


def test_valid_spec_and_stable_job_id():
    a = build_spec(**BASE)
    b = build_spec(**{**BASE, "output": "/elsewhere"})
    assert a.job_id() == b.job_id()  # where outputs go does not change the job
    assert a.job_id() != build_spec(**{**BASE, "method": "mean"}).job_id()
    assert a.bbox == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize("params, message", [
    ({"bbox": "1,2,3"}, "expected 4 numbers"),
    ({"bbox": "1,1,0,2"}, "min must be less than max"),
    ({"bbox": "a,b,c,d"}, "MINX,MINY,MAXX,MAXY"),
    ({"bbox": "0,0,200,1"}, "outside longitude/latitude"),
    ({"datetime": ""}, "empty"),
    ({"datetime": "2020-12-31/2020-01-01"}, "END is before START"),
    ({"datetime": "yesterday"}, "not ISO 8601"),
    ({"datetime": "../.."}, "both ends are open"),
    ({"method": "modal"}, "unknown method 'modal'"),
    ({"indices": ["FOO"]}, "unknown index"),
    ({"crs": "EPSG:99999"}, "unknown CRS"),
    ({"period": "P0D"}, "period"),
    ({"period": "monthly"}, "period"),
    ({"max_cloud": 150}, "max-cloud"),
    ({"mask_asset": "SCL"}, "go together"),
    ({"resolution": -3}, "resolution"),
    ({"collections": []}, "collections"),
])
def test_bad_parameters_name_the_problem(params, message):
    with pytest.raises(InvalidInput, match=message):
        build_spec(**{**BASE, **params})


def test_datetime_forms():
    start, end = parse_datetime_range("2018-01/2018-03")
    assert start == datetime(2018, 1, 1, tzinfo=timezone.utc)
    assert end.month == 3 and end.day == 31 and end.hour == 23
    start, end = parse_datetime_range("2018-06-01")
    assert (end - start).total_seconds() == pytest.approx(86400, abs=1)
    assert parse_datetime_range("../2018-01-01")[0] is None


def test_bbox_and_crs_helpers():
    assert parse_bbox([1, 2, 3, 4]) == (1.0, 2.0, 3.0, 4.0)
    assert check_crs("32633") == "EPSG:32633"
    assert check_crs("epsg:4326") == "EPSG:4326"


def test_index_names_are_normalised():
    assert build_spec(**{**BASE, "indices": ["ndvi", "Evi"]}).indices == ["NDVI", "EVI"]


def test_period_forms():
    assert build_spec(**{**BASE, "period": "p16d"}).period == "P16D"
