"""Registered processes: a package exposes one through the entry point group
``stacube.processes`` (here a distribution installed into a temporary folder on the path, as
pip would lay it out); ``stacube process list`` shows it; ``POST /jobs`` runs it by name with
its parameters checked, and refuses any other name and any module path."""

from __future__ import annotations

import json
import os
import sys

import pytest
from typer.testing import CliRunner

from stacube.cli.main import app
from stacube.errors import InvalidInput, NotFound
from stacube.jobs.processes import load_process, registered
from stacube_testing import process_site

MODULE = '''
"""Mean clear NIR of the period."""
from pydantic import BaseModel, Field


class Parameters(BaseModel):
    scale: float = Field(1.0, gt=0, le=100, description="Multiplies the mean.")


OUTPUTS = {"nir_mean": {"dtype": "float32"}}


def execute(cube, scale=1.0):
    return {"nir_mean": cube.nir.mean("time").values * scale}
'''

SCHEMA_MODULE = '''
"""Threshold of the mean clear red."""
PARAMETERS = {"type": "object", "properties": {"threshold": {"type": "number", "minimum": 0}},
              "required": ["threshold"], "additionalProperties": False}


def execute(cube, threshold):
    return {"above": (cube.red.mean("time") > threshold).values}
'''

BODY = {"collections": ["sentinel-2-l1c-eolearn-sample"], "bbox": [14.5514, 45.8659, 14.5642, 45.875],
        "datetime": "2015-07-01/2015-09-30", "bands": ["red", "nir"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A distribution ``stacube-test-processes`` with two registered processes, on the path of
    this interpreter and of the processes it starts."""
    root = process_site(tmp_path_factory.mktemp("site"), {"stacube_test_nir.py": MODULE, "stacube_test_red.py": SCHEMA_MODULE},
                        {"nir-mean": "stacube_test_nir", "red-above": "stacube_test_red:execute"})
    sys.path.insert(0, str(root))
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *([saved] if saved else [])])
    yield root
    sys.path.remove(str(root))
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def test_registered_processes_are_listed_with_their_parameters(site):
    assert {"nir-mean", "red-above"} <= set(registered())
    out = CliRunner().invoke(app, ["process", "list", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["nir-mean"]["description"] == "Mean clear NIR of the period."
    assert rows["nir-mean"]["parameters"]["properties"]["scale"]["exclusiveMinimum"] == 0
    assert rows["red-above"]["parameters"]["required"] == ["threshold"]
    assert len(rows["nir-mean"]["version"]) == 12


def test_parameters_are_checked_against_the_schema(site):
    nir, red = load_process("nir-mean"), load_process("red-above")
    assert nir.check_parameters({}) == {"scale": 1.0}
    with pytest.raises(InvalidInput, match="parameters.scale"):
        nir.check_parameters({"scale": 0})
    assert red.check_parameters({"threshold": 0.1}) == {"threshold": 0.1}
    with pytest.raises(InvalidInput, match="parameters.threshold: -1 is less than the minimum of 0"):
        red.check_parameters({"threshold": -1})
    with pytest.raises(InvalidInput, match="'colour' was unexpected"):
        red.check_parameters({"threshold": 1, "colour": "red"})
    with pytest.raises(NotFound, match="no registered process 'nope'"):
        load_process("nope")


@pytest.fixture(scope="module")
def client(site, jobs_client):
    return jobs_client


@pytest.mark.parametrize("body, fragment", [
    ({"process": "not-registered"}, "'not-registered' is not a registered process"),
    ({"process": "/tmp/focal.py"}, "'/tmp/focal.py' is not a registered process"),
    ({"process": "../stacube_test_nir.py"}, "is not a registered process"),
    ({"process": {"module": "os"}}, "is not a registered process"),
    ({"process": "nir-mean", "parameters": {"scale": -1}}, "parameters.scale"),
    ({"process": "nir-mean", "parameters": {"scale": 1}, "version": "0" * 12}, "version: set by the registered"),
    ({"process": "red-above", "parameters": {}}, "'threshold' is a required property"),
])
def test_the_jobs_api_runs_registered_processes_only(client, body, fragment):
    r = client.post("/jobs", json={**BODY, **body})
    assert r.status_code == 400, r.text
    assert fragment in r.json()["description"]


def test_the_jobs_api_runs_a_registered_process(client, samples, http_job):
    report = http_job(client, {**BODY, "process": "nir-mean", "parameters": {"scale": 2}})
    assert report["process"]["name"] == "nir-mean" and report["process"]["parameters"] == {"scale": 2.0}
    assert report["process"]["source"] == "nir-mean"  # a name, never a path
    item = samples.get_item(report["collection"], report["items"][0])
    assert item["properties"]["processing:expression"]["expression"]["process"] == "nir-mean"


def test_the_jobs_api_lists_the_registered_processes(client):
    r = client.get("/jobs/processes")
    assert r.status_code == 200, r.text
    rows = {p["name"]: p for p in r.json()["processes"]}
    assert rows["nir-mean"]["parameters"]["properties"]["scale"]["maximum"] == 100
    assert rows["nir-mean"]["outputs"] == {"nir_mean": {"dtype": "float32", "nodata": None}}
    assert rows["red-above"]["parameters"]["required"] == ["threshold"]
    assert client.get("/jobs/nope").status_code == 404  # job ids still route to jobs
