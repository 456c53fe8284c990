"""Zarr cubes on a real catalog: procedural fill, georeferencing, pyramid, registration,
parallel fill, claims, composites and errors."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import stacube
from conftest import PRIVATE, S2_DATES, SLOVENIA_BBOX, register_private
from stacube.cubes.build import create_cube
from stacube.cubes.fill import load_definition
from stacube.cubes.spec import build_cube_spec
from stacube.errors import Conflict, InvalidInput, NoData, NotFound

CLOUDY = {"2015-07-31", "2015-08-20"}  # the two fully cloudy scenes of the stack


def make(settings, name, collection=PRIVATE, **kw):
    params = dict(name=name, collections=[collection], datetime=S2_DATES, bands=["red", "nir"], indices=["NDVI"])
    params.update(kw)
    return create_cube(build_cube_spec(**params), settings, fill=False, replace=True, workers=1).definition


def independent(settings, collection, geobox):
    """Expected masked observations from the ODC facade (odc-stac straight from the COGs):
    reflectance = DN * 1e-4 where the s2cloudless mask is 0 (clear) and DN is not 0."""
    dc = stacube.Datacube(settings=settings)
    items = dc.find_datasets(collection, time=("2015-07-01", "2015-09-30"))
    ds = dc.load(product=collection, measurements=["B04", "B08", "CLM"], like=geobox, datasets=items)
    red, nir, clm = ds["B04"].values, ds["B08"].values, ds["CLM"].values
    clear = (clm == 0) & (red != 0)
    quality = np.where(clear, 2, np.where((clm == 1) & (red != 0), 1, 0)).astype(np.uint8)
    return np.where(clear, red * 1e-4, np.nan), np.where(clear, nir * 1e-4, np.nan), quality, ds.time.values


@pytest.fixture(scope="module")
def filled(private_s2, cube_settings):
    definition = make(cube_settings, "t-obs")
    ds = stacube.open_cube("t-obs", bbox=SLOVENIA_BBOX, settings=cube_settings, workers=1)
    return definition, ds


def test_procedural_fill_then_a_second_call_reads_no_source(samples, cube_settings, tmp_path, monkeypatch):
    import stacube.algo.load as load_module

    stack = register_private(samples, tmp_path, "cube-test-s2-gone")
    make(cube_settings, "t-gone", collection="cube-test-s2-gone")
    reads = []
    original = load_module._odc_load
    monkeypatch.setattr(load_module, "_odc_load", lambda items, *a, **k: reads.append(len(items)) or original(items, *a, **k))
    first = stacube.open_cube("t-gone", bbox=SLOVENIA_BBOX, settings=cube_settings, workers=1)
    assert first.attrs["stacube:units_computed"] >= 1 and sum(reads) >= 5
    # the sources disappear: the same request is answered from the store alone
    removed = [p.unlink() or p for p in Path(stack).rglob("*.tif")]
    assert len(removed) == 5 * 15
    reads.clear()
    second = stacube.open_cube("t-gone", bbox=SLOVENIA_BBOX, settings=cube_settings, workers=1)
    assert reads == []
    assert second.attrs["stacube:units_computed"] == 0
    assert second.attrs["stacube:units_reused"] == first.attrs["stacube:units_computed"]
    for var in ("red", "nir", "NDVI", "quality"):
        assert np.array_equal(first[var].values, second[var].values, equal_nan=True), var
    # forget the bookkeeping: the same request must go back to the (now missing) sources
    from stacube.cubes.records import CubeRecords
    from stacube.errors import StorageError

    with CubeRecords(cube_settings)._conn() as conn:
        conn.execute("DELETE FROM stacube.cube_chunks WHERE cube = 't-gone'")
    with pytest.raises(StorageError, match="cannot read"):
        stacube.open_cube("t-gone", bbox=SLOVENIA_BBOX, settings=cube_settings, workers=1)


def test_values_match_an_independent_load(filled, cube_settings):
    definition, ds = filled
    rows = ds.sizes["y"]
    geobox = ds.red.odc.geobox
    red, nir, quality, times = independent(cube_settings, PRIVATE, geobox)
    assert ds.sizes["time"] == 5 and rows >= 100
    assert np.array_equal(ds.time.values, times.astype("datetime64[ns]"))
    assert np.allclose(ds.red.values, red, equal_nan=True, atol=1e-7)
    assert np.allclose(ds.nir.values, nir, equal_nan=True, atol=1e-7)
    assert np.array_equal(ds.quality.values, quality)
    with np.errstate(invalid="ignore", divide="ignore"):
        assert np.allclose(ds.NDVI.values, (nir - red) / (nir + red), equal_nan=True, atol=1e-6)
    days = [str(t)[:10] for t in ds.time.values]
    for t, day in enumerate(days):
        clear = int((ds.quality.values[t] == 2).sum())
        assert (clear == 0) == (day in CLOUDY), day
    assert int((ds.quality.values == 2).sum()) == 3 * 100 * 101


def test_stores_are_cf_georeferenced_and_consolidated(filled, cube_settings):
    import rioxarray  # noqa: F401

    definition, _ = filled
    path = Path(definition.level_uri(0))
    assert (path / ".zmetadata").exists()
    ds = xr.open_zarr(path, consolidated=True)
    assert ds.red.rio.crs.to_epsg() == 32633
    assert tuple(ds.red.rio.transform())[:6] == pytest.approx(tuple(definition.geobox.affine)[:6])
    assert ds.red.odc.geobox.shape == definition.geobox.shape
    assert ds.red.encoding["chunks"] == (5, 128, 128) and ds.red.attrs["units"] == "1"
    assert ds.quality.dtype == np.uint8 and ds.quality.attrs["flag_meanings"] == "no_observation not_clear clear"
    assert ds.attrs["stacube:levels"][1]["href"] == "1.zarr"
    level1 = xr.open_zarr(Path(definition.level_uri(1)), consolidated=True)
    assert level1.red.rio.resolution()[0] == pytest.approx(2 * definition.geobox.resolution.x)


def test_pyramid_levels_are_2x2_reductions(filled, cube_settings):
    definition, _ = filled
    zero = stacube.open_cube("t-obs", variables=["red", "quality"], fill=False, settings=cube_settings)
    one = stacube.open_cube("t-obs", variables=["red", "quality"], level=1, fill=False, settings=cube_settings)
    t, ny, nx = zero.red.shape
    blocks = zero.red.values.reshape(t, ny // 2, 2, nx // 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks: NaN expected
        expected = np.nanmean(blocks, axis=(2, 4))
    assert np.allclose(one.red.values, expected, equal_nan=True, atol=1e-6)
    assert np.array_equal(one.quality.values, zero.quality.values.reshape(t, ny // 2, 2, nx // 2, 2).max(axis=(2, 4)))
    assert np.isfinite(one.red.values).sum() > 0
    with pytest.raises(InvalidInput, match="levels 0.."):
        stacube.open_cube("t-obs", level=definition.levels, settings=cube_settings)


def test_cube_is_registered_as_a_collection_with_zarr_assets(filled, private_s2):
    catalog, _ = private_s2
    definition, _ = filled
    doc = catalog.get_collection("t-obs")
    assert doc["assets"]["zarr"]["type"] == "application/vnd+zarr"
    assert Path(doc["assets"]["zarr"]["href"]) == Path(definition.level_uri(0))
    assert [k for k in doc["assets"] if k.startswith("zarr-level-")] == [f"zarr-level-{k}" for k in range(1, definition.levels)]
    assert doc["cube:dimensions"]["x"]["reference_system"] == 32633
    assert len(doc["cube:dimensions"]["time"]["values"]) == 5
    assert set(doc["cube:variables"]) == {"red", "nir", "NDVI", "quality"}
    assert doc["stacube:cube"]["chunks"] == {"time": 5, "y": 128, "x": 128}
    assert any(link["rel"] == "derived_from" and link["title"] == PRIVATE for link in doc["links"])
    # a STAC client opens the asset as advertised
    ds = xr.open_zarr(doc["assets"]["zarr"]["href"], **{k: v for k, v in doc["assets"]["zarr"]["xarray:open_kwargs"].items() if k != "engine"})
    assert ds.sizes["time"] == 5


def test_parallel_workers_fill_disjoint_tiles(private_s2, cube_settings, filled):
    from stacube.cubes.records import CubeRecords

    definition = make(cube_settings, "t-par", tile_size=128)
    ny, nx = definition.tiles_shape
    assert ny * nx >= 2
    ds = stacube.open_cube("t-par", settings=cube_settings, workers=2)
    assert ds.attrs["stacube:units_computed"] == ny * nx
    states = CubeRecords(cube_settings).states("t-par")
    assert len(states) == ny * nx and set(states.values()) == {"done"}
    _, serial = filled
    same = ds.red.sel(x=serial.x, y=serial.y, method="nearest", tolerance=1.0)
    assert np.array_equal(same.values, serial.red.values, equal_nan=True)


def test_claims_are_exclusive_and_stale_ones_are_taken_over(filled, cube_settings):
    from stacube.cubes.records import CubeRecords

    store = CubeRecords(cube_settings)
    unit = (99, 99, 0)
    assert store.claim("t-obs", [unit], "a") == [unit]
    assert store.claim("t-obs", [unit], "b") == []
    assert store.states("t-obs", [unit]) == {unit: "running"}
    with store._conn() as conn:
        conn.execute("UPDATE stacube.cube_chunks SET updated = now() - interval '2 hours' "
                     "WHERE cube = 't-obs' AND tile_y = 99")
    assert store.states("t-obs", [unit]) == {unit: "stale"}
    assert store.claim("t-obs", [unit], "b") == [unit]
    store.finish("t-obs", unit, error="boom")
    assert store.claim("t-obs", [unit], "c") == [unit]
    store.release("t-obs", [unit], "c")
    assert store.states("t-obs", [unit]) == {}


def test_median_cube_is_the_median_of_the_clear_observations(filled, cube_settings):
    definition = make(cube_settings, "t-median", method="median", period="P1M")
    ds = stacube.open_cube("t-median", bbox=SLOVENIA_BBOX, settings=cube_settings, workers=1)
    _, obs = filled
    assert [str(t)[:10] for t in ds.time.values] == ["2015-07-01", "2015-08-01", "2015-09-01"]
    assert set(ds.data_vars) == {"red", "nir", "NDVI", "clear_count", "valid_count"}
    months = obs.time.dt.month.values
    for step, month in enumerate((7, 8, 9)):
        sub = obs.red.values[months == month]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: NaN expected
            expected = np.nanmedian(sub, axis=0)
        assert np.allclose(ds.red.values[step], expected, equal_nan=True, atol=1e-6)
        quality = obs.quality.values[months == month]  # 0 no observation, 1 not clear, 2 clear
        expected_clear = np.where((quality > 0).any(axis=0), (quality == 2).sum(axis=0), np.nan)
        assert np.array_equal(ds.clear_count.values[step], expected_clear, equal_nan=True)
        assert np.array_equal(ds.valid_count.values[step], (quality > 0).sum(axis=0))
    assert definition.mode == "composite"


def test_bad_requests(filled, cube_settings, private_s2):
    with pytest.raises(NotFound, match="unknown cube"):
        stacube.open_cube("no-such-cube", settings=cube_settings)
    with pytest.raises(NoData, match="outside cube t-obs"):
        stacube.open_cube("t-obs", bbox=(10, 10, 11, 11), settings=cube_settings)
    with pytest.raises(NoData, match="no time step"):
        stacube.open_cube("t-obs", bbox=SLOVENIA_BBOX, time="2020-01-01/2020-02-01", settings=cube_settings)
    with pytest.raises(InvalidInput, match="no variable 'swir16'"):
        stacube.open_cube("t-obs", variables=["swir16"], settings=cube_settings)
    with pytest.raises(InvalidInput, match="bbox"):
        stacube.open_cube("t-obs", bbox="1,2,x,4", settings=cube_settings)
    with pytest.raises(Conflict, match="not a cube"):
        create_cube(build_cube_spec(name=PRIVATE, collections=[PRIVATE], datetime=S2_DATES), cube_settings, fill=False)
    with pytest.raises(Conflict, match="exists"):
        create_cube(build_cube_spec(name="t-obs", collections=[PRIVATE], datetime=S2_DATES), cube_settings, fill=False)
    with pytest.raises(NoData, match="no item"):
        create_cube(build_cube_spec(name="t-empty", collections=[PRIVATE], datetime="2020-01-01/2020-12-31"),
                    cube_settings, fill=False)
    with pytest.raises(InvalidInput, match="has no band"):
        create_cube(build_cube_spec(name="t-bad", collections=[PRIVATE], datetime=S2_DATES, bands=["lwir"]),
                    cube_settings, fill=False)


def test_cube_on_s3(private_s2, settings, s3_server):
    import boto3

    from stacube.cubes.arrays import delete_stores

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="cubes")
    s3_settings = settings.model_copy(update={"s3_endpoint": s3_server, "output": "s3://cubes/root"})
    spec = build_cube_spec(name="t-s3", collections=[PRIVATE], datetime=S2_DATES, bands=["red"])
    definition = create_cube(spec, s3_settings, fill=False, replace=True).definition
    assert definition.level_uri(0) == "s3://cubes/root/cubes/t-s3/0.zarr"
    ds = stacube.open_cube("t-s3", bbox=SLOVENIA_BBOX, settings=s3_settings, workers=1)
    assert ds.attrs["stacube:units_computed"] >= 1 and int((ds.quality.values == 2).sum()) == 3 * 100 * 101
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket="cubes")["Contents"]}
    assert "root/cubes/t-s3/0.zarr/.zmetadata" in keys and any(k.startswith("root/cubes/t-s3/0.zarr/red/") for k in keys)
    again = stacube.open_cube("t-s3", bbox=SLOVENIA_BBOX, settings=s3_settings)
    assert again.attrs["stacube:units_computed"] == 0
    assert np.array_equal(again.red.values, ds.red.values, equal_nan=True)
    delete_stores(definition, s3_settings)
    assert "Contents" not in boto3.client("s3", endpoint_url=s3_server).list_objects_v2(Bucket="cubes")


def test_cube_records_borrow_the_open_session_and_retry_a_dropped_connection(settings, monkeypatch):
    """The cube store is a database store like the others: inside a session its calls run on
    the session's one connection; outside, on this thread's kept connection, and a call that
    meets a connection the server ended is retried on a fresh one instead of failing."""
    import psycopg

    from stacube.cubes.records import CubeRecords
    from stacube.db import connection
    from stacube.jobs.state import JobStore

    store = CubeRecords(settings)
    doc = {"name": "records-borrowing", "note": "a record, never filled"}
    store.create(doc["name"], doc, replace=True)
    try:
        with connection.session(settings) as shared:
            assert store.get(doc["name"]) == doc
            JobStore(settings).list(limit=1)
            assert doc["name"] in {r["name"] for r in store.list()}
            with store._conn() as conn:
                assert conn is shared.conn
            assert shared.opened == 1
        monkeypatch.setattr(connection, "IDLE_CHECK_SECONDS", 3600.0, raising=False)  # no check before use
        store.list()
        with store._conn() as conn:
            pid = conn.info.backend_pid
        with store._conn() as conn:
            assert conn.info.backend_pid == pid  # kept between calls
        with psycopg.connect(settings.dsn(), autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        assert store.get(doc["name"]) == doc
        with store._conn() as conn:
            assert conn.info.backend_pid != pid
    finally:
        store.delete(doc["name"])
