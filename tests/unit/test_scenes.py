"""Scene names, GeoTIFF date tags, product descriptions, output grids on the sources' pixels, and
the not-clear reasons of quality masks."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from stacube.algo.load import Source
from stacube.catalog.quality import clear_values_rule, preset
from stacube.catalog.scenes import (
    DatetimePattern,
    acquisition_time,
    asset_key,
    find_scene_id,
    iso_date_in,
    mission_common_name,
    parse_tag_time,
)
from stacube.core.geobox import check_anchor, source_grid
from stacube.errors import InvalidInput
from stacube.jobs.plan import grid_geobox, make_geobox
from stacube.jobs.spec import build_spec
from stacube.plots import line_segments, rgb_bands


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize("name, scene_id, when, platform, instruments", [
    ("LE70350322008118EDC00", "LE70350322008118EDC00", utc(2008, 4, 27), "landsat-7", ("etm+",)),
    ("lt50350322003160pac01_sr", "lt50350322003160pac01", utc(2003, 6, 9), "landsat-5", ("tm",)),
    ("LC08_L1TP_013032_20180131_20180207_01_T1", "LC08_L1TP_013032_20180131_20180207_01_T1", utc(2018, 1, 31),
     "landsat-8", ("oli", "tirs")),
    ("LC09_L2SP_034032_20220611_20230413_02_T1_SR_B4", "LC09_L2SP_034032_20220611_20230413_02_T1",
     utc(2022, 6, 11), "landsat-9", ("oli", "tirs")),
    ("LT05_L1TP_035032_19950620_20200912_02_T1", "LT05_L1TP_035032_19950620_20200912_02_T1", utc(1995, 6, 20),
     "landsat-5", ("tm",)),
    ("S2B_MSIL2A_20210715T101559_N0301_R065_T32TPS_20210715T131002.SAFE",
     "S2B_MSIL2A_20210715T101559_N0301_R065_T32TPS_20210715T131002", utc(2021, 7, 15, 10, 15, 59),
     "sentinel-2b", ("msi",)),
    ("S2A_33TVM_20150711_0_L1C", "S2A_33TVM_20150711_0_L1C", utc(2015, 7, 11), "sentinel-2a", ("msi",)),
    ("T33TVM_20150711T100008_B04", "T33TVM_20150711T100008", utc(2015, 7, 11, 10, 0, 8), None, ("msi",)),
])
def test_scene_ids_of_common_missions(name, scene_id, when, platform, instruments):
    scene = find_scene_id(name)
    assert scene is not None
    assert (scene.id, scene.datetime, scene.platform, scene.instruments) == (scene_id, when, platform, instruments)


def test_names_without_an_id_and_iso_dates():
    for name in ("scene-d", "B4", "S2_L1C_20150711T100008", "LE7035032200836XEDC00", "LC08_L1TP_013032"):
        assert find_scene_id(name) is None, name
    assert iso_date_in("S2_L1C_20150711T100008") == utc(2015, 7, 11, 10, 0, 8)
    assert iso_date_in("site-2019-03-04-b") == utc(2019, 3, 4)
    assert iso_date_in("run_20191301_20190405") == utc(2019, 4, 5)  # month 13 is no date
    assert iso_date_in("tile_123456789") is None


def test_asset_keys_drop_the_scene_id():
    pid = "LC08_L1TP_013032_20180710_20180717_01_T1"
    assert asset_key(f"{pid}_B4", pid) == "B4"
    assert asset_key(pid, pid) == pid and asset_key("B4", None) == "B4"


def test_band_designations_of_known_sensors():
    assert mission_common_name("etm+", "B3") == "red" and mission_common_name("etm+", "B6_VCID_2") == "lwir"
    assert mission_common_name("oli-tirs", "SR_B5") == "nir08" and mission_common_name("oli-tirs", "ST_B10") == "lwir11"
    assert mission_common_name("msi", "B8A") == "nir08" and mission_common_name("msi", "B04") == "red"
    assert mission_common_name("tm", "band4") == "nir08" and mission_common_name(None, "B4") is None
    assert mission_common_name("tm", "Fmask") is None


def test_user_patterns():
    assert DatetimePattern("%Y_%j").search("site_2018_152") == utc(2018, 6, 1)
    assert DatetimePattern("%d.%m.%Y").search("scene 05.01.2020 final") == utc(2020, 1, 5)
    regex = DatetimePattern(r"(?P<day>\d\d)(?P<month>\d\d)(?P<year>\d{4})")
    assert regex.search("img_31122019") == utc(2019, 12, 31) and regex.search("img") is None
    for bad, fragment in (("scene", "named groups"), ("%Y%q", "unsupported code"), ("(?P<year>\\d{4})", "month"),
                          ("(?P<year>[", "unterminated")):
        with pytest.raises(InvalidInput, match=fragment):
            DatetimePattern(bad)


def test_tag_times():
    assert parse_tag_time("2018:12:01 15:30:00") == utc(2018, 12, 1, 15, 30)
    assert parse_tag_time("2018-01-31T15:30:00Z") == utc(2018, 1, 31, 15, 30)
    assert parse_tag_time("2018-01-31T17:30:00+02:00") == utc(2018, 1, 31, 15, 30)
    assert parse_tag_time("yesterday") is None


def _tiff(path: Path, tags: dict | None = None) -> Path:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs="EPSG:32618", transform=Affine(30, 0, 336375, 0, -30, 4400025)) as dst:
        dst.write(np.zeros((1, 4, 4), dtype="uint8"))
        if tags:
            dst.update_tags(**tags)
    return path


def test_acquisition_time_order_and_refusal(tmp_path):
    tagged = _tiff(tmp_path / "a.tif", {"TIFFTAG_DATETIME": "2018:12:01 15:30:00"})
    plain = _tiff(tmp_path / "b.tif")
    scene = ["LE70350322008118EDC00"]
    assert acquisition_time(tmp_path, scene, [tagged])[0] == utc(2018, 12, 1, 15, 30)  # tags first
    when, how = acquisition_time(tmp_path, scene, [plain])
    assert when == utc(2008, 4, 27) and "Landsat scene ID" in how
    # an explicit pattern beats every guess
    assert acquisition_time(tmp_path, ["x_2019_001"], [tagged], pattern=DatetimePattern("%Y_%j"))[0] == utc(2019, 1, 1)
    with pytest.raises(InvalidInput) as err:
        acquisition_time(tmp_path / "mystery", ["mystery", "b"], [plain], pattern=DatetimePattern("%Y%m%d"))
    message = str(err.value)
    assert str(tmp_path / "mystery") in message
    for tried in ("--datetime-pattern '%Y%m%d'", "TIFFTAG_DATETIME", "scene/product IDs", "'mystery'"):
        assert tried in message


def test_not_clear_reasons_are_the_masks_names():
    fmask = preset("fmask", "Fmask")
    codes, names = fmask.reason_table(np.array([0, 1, 2, 3, 4, 255], dtype=np.uint8))
    assert [names[c - 1] if c else None for c in codes] == [None, None, "cloud_shadow", "snow", "cloud", None]
    bqa = preset("landsat-c1-bqa", "BQA")
    codes, names = bqa.reason_table(np.array([1, 2720, 2800, 2976], dtype=np.uint16))
    assert [names[c - 1] if c else None for c in codes] == [None, None, "cloud", "cloud_shadow"]
    assert preset("binary-cloud", "CLM").reason_names() == ["cloud"]
    custom = clear_values_rule("QA", [0], 255)
    codes, names = custom.reason_table(np.array([0, 7, 255], dtype=np.uint8))
    assert [names[c - 1] if c else None for c in codes] == [None, "not_clear", None]


# -- output grids ---------------------------------------------------------------------------------
SLOVENIA = Affine(9.99479222007154, 0.0, 465181.0522318204, 0.0, -9.997448467363668, 5080254.63349641)


def _source(transform: Affine, shape: tuple[int, int], crs: str, storage: dict | None = None) -> Source:
    item = {"id": "i", "properties": {"datetime": "2020-01-01T00:00:00Z"},
            "assets": {"B04": {"href": "x.tif", "proj:code": crs, "proj:transform": list(transform)[:6],
                               "proj:shape": list(shape)}}}
    collection = {"id": "c", **({"stacube:storage": storage} if storage else {})}
    return Source(collection, [item], {"red": "B04"}, None)


def _bounds(transform: Affine, shape: tuple[int, int], inset: float = 0.0) -> str:
    x0, y0 = transform * (0, 0)
    x1, y1 = transform * (shape[1], shape[0])
    return f"{x0 + inset},{y1 + inset},{x1 - inset},{y0 - inset}"


def test_default_output_coincides_with_the_source_pixels():
    # a 100 x 101 px stack whose origin is no multiple of its pixel size composites to itself
    src = _source(SLOVENIA, (101, 100), "EPSG:32633")
    spec = build_spec(collections=["c"], bbox=_bounds(SLOVENIA, (101, 100), 0.5), bbox_crs="EPSG:32633",
                      datetime="2020", method="median")
    geobox = make_geobox(spec, [src], "red")
    assert geobox.shape == (101, 100)
    assert np.allclose(list(geobox.affine)[:6], list(SLOVENIA)[:6])


def test_declared_storage_keeps_the_sources_origin():
    landsat = Affine(30.0, 0.0, 336375.0, 0.0, -30.0, 4400025.0)  # edges on x.5 of 30 m
    src = _source(landsat, (61, 61), "EPSG:32613", {"crs": "EPSG:32613", "resolution": [30, 30]})
    assert source_grid(src.collection, src.items, "B04").origin == (336375.0, 4400025.0)
    area = dict(collections=["c"], bbox=_bounds(landsat, (61, 61), 1.0), bbox_crs="EPSG:32613",
                datetime="2020", method="median")
    geobox = make_geobox(build_spec(**area), [src], "red")
    assert geobox.shape == (61, 61) and geobox.affine.c == 336375.0 and geobox.affine.f == 4400025.0
    # the same resolution asked for keeps the alignment too; other alignments are a choice
    assert make_geobox(build_spec(**area, resolution=30), [src], "red") == geobox
    edge = make_geobox(build_spec(**area, anchor="edge"), [src], "red")
    assert edge.affine.c % 30 == 0 and edge.shape == (62, 62)
    coarse = make_geobox(build_spec(**area, resolution=60), [src], "red")
    assert (coarse.affine.c - 336375.0) % 60 == 0
    with pytest.raises(InvalidInput, match="anchor"):
        build_spec(**area, anchor="north")
    assert check_anchor("0.5, 0.25") == "0.5,0.25"


def test_named_grids_clip_to_the_area_unless_whole_tiles_are_asked_for():
    landsat = Affine(30.0, 0.0, 336375.0, 0.0, -30.0, 4400025.0)
    src = _source(landsat, (3000, 3000), "EPSG:32613", {"crs": "EPSG:32613", "resolution": [30, 30]})
    area = dict(collections=["c"], bbox="340000,4390000,341800,4391800", bbox_crs="EPSG:32613",
                datetime="2020", method="median", grid="native")
    clipped = grid_geobox(build_spec(**area), [src], "red", 1024)
    assert clipped.shape == (61, 61) and clipped.affine.c == 339975.0  # whole pixels on the x.5 lines
    tiles = grid_geobox(build_spec(**area, grid_tiles=True), [src], "red", 1024)
    assert tiles.shape == (1024, 1024)
    with pytest.raises(InvalidInput, match="grid-tiles needs --grid"):
        build_spec(**{**area, "grid": None}, grid_tiles=True)


def test_job_ids_of_jobs_without_the_new_options_do_not_change():
    base = dict(collections=["c"], bbox="1,2,3,4", datetime="2018", method="median")
    assert build_spec(**base).job_id() == build_spec(**base, anchor=None, grid_tiles=False).job_id()
    assert build_spec(**base).job_id() != build_spec(**base, anchor="edge").job_id()


# -- pictures -------------------------------------------------------------------------------------
def test_lines_break_over_long_gaps():
    dates = np.array(["2020-01-01", "2020-01-17", "2020-05-01", "2020-05-17"], dtype="datetime64[D]")
    assert [list(p) for p in line_segments(dates, 60)] == [[0, 1], [2, 3]]
    assert [list(p) for p in line_segments(dates, None)] == [[0, 1, 2, 3]]


def test_composite_colours():
    assert rgb_bands({"red": "a", "green": "b", "blue": "c", "nir": "d"})[0] == ["red", "green", "blue"]
    names, title = rgb_bands({"red": "a", "nir": "d", "swir16": "e"})
    assert names == ["swir16", "nir", "red"] and title.startswith("false colour")
    assert rgb_bands({"red": "a", "nir08": "b", "green": "c"})[0] == ["nir08", "red", "green"]
    assert rgb_bands({"B5": "a", "B4": "b", "B3": "c"}, ["B5", "B4", "B3"])[0] == ["B5", "B4", "B3"]
    with pytest.raises(InvalidInput, match="no swir16"):
        rgb_bands({"red": "a"}, ["swir16", "nir", "red"])
