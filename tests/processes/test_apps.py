"""stacube's own analysis processes (water, ndvi-anomaly, change) run from the shipped example
configurations through ``stacube process run`` on the sample stacks; every output is checked
against numpy computed here from the same loaded stack. Also: they are listed, their job keys
follow from their parameters, and the jobs API runs them by name."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from stacube_testing import ROOT, SHARED
from typer.testing import CliRunner

from stacube.algo.tile import load_tile
from stacube.cli.main import app
from stacube.core.times import parse_datetime_range, to_datetime64
from stacube.errors import InvalidInput
from stacube.jobs.process_config import read_config
from stacube.jobs.processes import BUILTIN, registered, registered_spec
from stacube.jobs.runner import check

EXAMPLES = ROOT / "examples" / "apps"
NDVI_STACK = SHARED / "stacks" / "s2-ndvi-clm-slovenia-eolearn"
COUNT_NODATA = 65535
runner = CliRunner()


def run_example(name: str, folder: Path, **changes) -> tuple[dict, object]:
    """The example configuration ``name`` (with ``changes``), run in-process, writing into
    ``folder``: ``(report, plan)``."""
    doc = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    doc.update(output=str(folder / "out"), output_collection=f"apps-{name}", **changes)
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = runner.invoke(app, ["process", "run", str(config), "--workers", "1", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "completed" and report["failed_tiles"] == 0
    spec, _ = read_config(config)
    return report, check(spec, _settings())


def _settings():
    from stacube.settings import Settings

    return Settings()


def outputs(report: dict, step: int = 0) -> dict[str, np.ndarray]:
    """``{output: array}`` of one period's COGs."""
    label = report["steps"][step]["label"]
    out = {}
    for name, href in report["outputs"]["cogs"][label].items():
        with rasterio.open(href) as src:
            out[name] = src.read(1)
    return out


def loaded(plan):
    """The plan's stack on its whole grid: what the tiles read."""
    return load_tile(plan.inputs, plan.geobox, plan.inputs.load_bands)


def masked(stack, name: str) -> np.ndarray:
    return np.where(stack.clear, stack.bands[name], np.nan)


def within(stack, start, end) -> np.ndarray:
    times = np.asarray(stack.times).astype("datetime64[ns]")
    return (times >= to_datetime64(start)) & (times <= to_datetime64(end))


def median_and_count(values: np.ndarray, observed: np.ndarray, chosen: np.ndarray, min_count: int = 1):
    """numpy's nanmedian over the chosen slices (NaN below ``min_count``) and the clear count
    (nodata where nothing was observed)."""
    part = values[chosen]
    count = np.isfinite(part).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN
        median = np.nanmedian(part, axis=0)
    median = np.where(count >= min_count, median, np.nan)
    return median, np.where(observed[chosen].any(axis=0), count, COUNT_NODATA)


def change_mask(diff: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``|diff| > threshold``, 0 where not, 255 where ``diff`` is NaN."""
    return np.where(np.isfinite(diff), np.abs(diff) > threshold, 255).astype(np.uint8)


def test_the_apps_are_registered_and_listed():
    assert set(BUILTIN) <= set(registered())
    out = runner.invoke(app, ["process", "list", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert {"water", "ndvi-anomaly", "change"} <= set(rows)
    water = rows["water"]
    assert water["entry_point"] == "stacube.apps.water" and len(water["version"]) == 12
    assert water["description"].startswith("Water frequency")
    props = water["parameters"]["properties"]
    assert props["index"]["enum"] == ["auto", "MNDWI", "NDWI"] and props["index"]["default"] == "auto"
    assert props["threshold"]["minimum"] == -1 and props["threshold"]["title"] == "Water threshold"
    assert rows["ndvi-anomaly"]["parameters"]["required"] == ["baseline", "target"]
    change = rows["change"]["parameters"]["properties"]
    assert "median" in change["method"]["enum"] and change["method"]["default"] == "median"
    assert all(p.get("description") and p.get("title") for r in rows.values() if r["name"] in BUILTIN
               for p in r["parameters"]["properties"].values())


BODY = {"collections": ["sentinel-2-l1c-eolearn-sample"], "bbox": [14.5514, 45.8659, 14.5642, 45.875]}


def test_job_keys_follow_from_the_parameters():
    water = registered_spec({**BODY, "datetime": "2015-07-01/2015-09-30", "process": "water"})
    assert water.bands == ["green", "swir16"] and water.outputs["wet_count"].nodata == COUNT_NODATA
    ndwi = registered_spec({**BODY, "datetime": "2015", "process": "water", "parameters": {"index": "NDWI"}})
    assert ndwi.bands == ["green", "nir"]
    mine = registered_spec({**BODY, "datetime": "2015", "process": "water", "bands": ["B03", "B11"]})
    assert mine.bands == ["B03", "B11"]  # the job's own bands are kept
    params = {"before": "2015-07", "after": "2015-08-15/2015-09-30"}
    change = registered_spec({**BODY, "process": "change", "parameters": params})
    assert change.bands == ["nir", "red"] and parse_datetime_range(change.datetime) == (
        parse_datetime_range("2015-07-01/2015-09-30"))
    assert change.parameters == {**params, "index": "NDVI", "band": None, "method": "median", "threshold": 0.1,
                                 "min_count": 1}
    band = registered_spec({**BODY, "process": "change", "parameters": {**params, "band": "swir16"}})
    assert band.bands == ["swir16"]
    for body, fragment in [
        ({"process": "change", "parameters": params, "period": "P1M"}, "drop period"),
        ({"process": "change", "parameters": params, "datetime": "2015-08-01/2015-12-31"},
         "does not cover before 2015-07"),
        ({"process": "change", "parameters": {**params, "index": "NOPE"}}, "unknown index 'NOPE'"),
        ({"process": "change", "parameters": {**params, "method": "geomedian"}}, "parameters.method"),
        ({"process": "ndvi-anomaly", "parameters": {"baseline": "2016/..", "target": "2017"}}, "give both ends"),
        ({"process": "ndvi-anomaly", "parameters": {"baseline": "2016"}}, "parameters.target: Field required"),
        ({"process": "water", "datetime": "2015", "parameters": {"threshold": 2}}, "parameters.threshold"),
    ]:
        with pytest.raises(InvalidInput, match=fragment):
            registered_spec({**BODY, **body})


def test_water_frequency_matches_numpy(samples, tmp_path):
    report, plan = run_example("water", tmp_path)
    assert report["process"]["parameters"] == {"index": "auto", "threshold": 0.0}
    assert len(report["steps"]) == 2  # two half years
    stack = loaded(plan)
    green, swir = masked(stack, "green"), masked(stack, "swir16")
    with np.errstate(all="ignore"):
        mndwi = (green - swir) / (green + swir)  # Xu 2006
    clear = np.isfinite(mndwi)
    wet_somewhere = False
    for step, period in enumerate(plan.periods):
        got = outputs(report, step)
        chosen = within(stack, period.start, period.end)
        clear_n = clear[chosen].sum(axis=0)
        wet_n = (clear[chosen] & (mndwi[chosen] > 0)).sum(axis=0)
        assert got["clear_count"].dtype == np.uint16 and got["frequency"].dtype == np.float32
        observed = stack.observed[chosen].any(axis=0)
        assert np.array_equal(got["clear_count"], np.where(observed, clear_n, COUNT_NODATA))
        assert np.array_equal(got["wet_count"], np.where(clear_n > 0, wet_n, COUNT_NODATA))
        with np.errstate(all="ignore"):
            expected = np.where(clear_n > 0, wet_n / clear_n, np.nan)
        assert np.allclose(got["frequency"], expected, equal_nan=True, atol=1e-6)
        wet_somewhere |= bool((got["frequency"] == 1).any())
        assert (clear_n > 0).sum() > 0.5 * clear_n.size  # most pixels are seen clear
    assert wet_somewhere  # the harbour and the ocean are water


def test_change_matches_numpy(samples, tmp_path):
    report, plan = run_example("change", tmp_path)
    got = outputs(report)
    stack = loaded(plan)
    red, nir = masked(stack, "red"), masked(stack, "nir")
    with np.errstate(all="ignore"):
        ndvi = (nir - red) / (nir + red)
    before, before_n = median_and_count(ndvi, stack.observed, within(stack, *parse_datetime_range("2015-07-01/2015-07-31")))
    after, after_n = median_and_count(ndvi, stack.observed, within(stack, *parse_datetime_range("2015-08-15/2015-09-30")))
    assert np.allclose(got["before"], before, equal_nan=True, atol=1e-6)
    assert np.allclose(got["after"], after, equal_nan=True, atol=1e-6)
    assert np.array_equal(got["before_count"], before_n) and np.array_equal(got["after_count"], after_n)
    diff = after - before
    assert np.allclose(got["difference"], diff, equal_nan=True, atol=1e-6)
    assert np.isfinite(diff).mean() > 0.9  # each range has a clear date (the grid has an edge beyond the data)
    assert got["changed"].dtype == np.uint8
    assert np.array_equal(got["changed"], change_mask(diff, 0.1))
    assert 0 < (got["changed"] == 1).sum() < np.isfinite(diff).sum()  # some pixels changed, not all


def test_change_of_a_band_by_its_mean(samples, tmp_path):
    params = {"before": "2015-07-01/2015-07-31", "after": "2015-08-15/2015-09-30", "band": "nir",
              "method": "mean", "threshold": 0.02}
    report, plan = run_example("change", tmp_path, parameters=params)
    got = outputs(report)
    stack = loaded(plan)
    assert list(stack.bands) == ["nir"]
    nir = masked(stack, "nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN
        means = [np.nanmean(nir[within(stack, *parse_datetime_range(params[k]))], axis=0) for k in ("before", "after")]
    assert np.allclose(got["difference"], means[1] - means[0], equal_nan=True, atol=1e-5)
    assert np.array_equal(got["changed"], change_mask(got["difference"], 0.02))


@pytest.fixture(scope="module")
def ndvi_stack(samples):
    if not NDVI_STACK.exists():
        pytest.skip(f"needs the 68-date NDVI stack of the shared test data ({NDVI_STACK})")
    from stacube.catalog.register import add_datasets

    add_datasets(samples, [NDVI_STACK])
    return samples


def test_ndvi_anomaly_matches_numpy(ndvi_stack, tmp_path):
    report, plan = run_example("ndvi-anomaly", tmp_path)
    assert report["process"]["parameters"]["ndvi_band"] == "NDVI"
    got = outputs(report)
    stack = loaded(plan)
    ndvi = masked(stack, "NDVI")
    base, base_n = median_and_count(ndvi, stack.observed, within(stack, *parse_datetime_range("2016-05-01/2016-09-30")), 2)
    target, target_n = median_and_count(ndvi, stack.observed, within(stack, *parse_datetime_range("2017-05-01/2017-09-30")), 2)
    assert np.allclose(got["baseline_ndvi"], base, equal_nan=True, atol=1e-6)
    assert np.allclose(got["target_ndvi"], target, equal_nan=True, atol=1e-6)
    assert np.allclose(got["anomaly"], target - base, equal_nan=True, atol=1e-6)
    assert np.array_equal(got["baseline_count"], base_n) and np.array_equal(got["target_count"], target_n)
    assert base_n.min() >= 2 and np.isfinite(got["anomaly"]).mean() > 0.9


def test_the_jobs_api_runs_the_water_process(jobs_client, http_job):
    client = jobs_client
    listed = {p["name"]: p for p in client.get("/jobs/processes").json()["processes"]}
    assert listed["water"]["outputs"]["frequency"] == {"dtype": "float32", "nodata": None}
    assert listed["change"]["outputs"]["changed"] == {"dtype": "uint8", "nodata": 255}
    report = http_job(client, {**BODY, "datetime": "2015-07-01/2015-09-30", "process": "water",
                               "parameters": {"threshold": 0.1}})
    assert report["process"]["name"] == "water" and report["process"]["source"] == "water"
    assert report["bands"] == ["green", "swir16"]
    bad = client.post("/jobs", json={**BODY, "process": "change", "period": "P1M",
                                     "parameters": {"before": "2015-07", "after": "2015-08"}})
    assert bad.status_code == 400 and "drop period" in bad.json()["description"]
