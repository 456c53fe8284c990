"""Process fixtures: user modules and configurations written to temporary folders, as a user
would write them."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
import yaml

SLOVENIA = {"bbox": [14.5514, 45.8659, 14.5642, 45.8750], "crs": "EPSG:4326"}
COLLECTION = "sentinel-2-l1c-eolearn-sample"

#: A user process: the mean clear NDVI of the tile, then its focal mean over a (2r+1)^2
#: window (sums of shifted arrays in one fixed order, so every pixel's value is the same
#: whatever array it is computed in); optionally slow, and failing on the tile that holds
#: ``fail_x``.
FOCAL = '''
"""Focal mean of the mean clear NDVI."""
import time

import numpy as np


def execute(cube, radius=1, sleep=0.0, fail_x=None):
    if fail_x is not None and float(cube.x.min()) <= fail_x <= float(cube.x.max()):
        raise ValueError(f"no NDVI at x={fail_x}")
    time.sleep(sleep)
    ndvi = ((cube.nir - cube.red) / (cube.nir + cube.red)).values
    count = np.isfinite(ndvi).sum(axis=0)
    mean = np.where(count > 0, np.nansum(ndvi, axis=0) / np.maximum(count, 1), np.nan)
    filled = np.pad(np.nan_to_num(mean), radius, mode="edge")
    ny, nx = mean.shape
    total = np.zeros((ny, nx))
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            total = total + filled[dy:dy + ny, dx:dx + nx]
    return {"focal": total / (2 * radius + 1) ** 2, "clear": cube.clear.sum("time").values.astype("uint16")}
'''


def _write_process(folder: Path, source: str = FOCAL, name: str = "focal.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def _write_config(folder: Path, *, process: str = "focal.py", name: str = "job.yaml", **extra) -> Path:
    doc = {"process": process,
           "inputs": {"collections": [COLLECTION], "bands": ["red", "nir"]},
           "area": SLOVENIA, "time": "2015-07-01/2015-09-30", "output": "out/", "parameters": {}}
    doc.update(extra)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def write_process():
    """``write_process(folder, source=FOCAL, name="focal.py") -> path``."""
    return _write_process


@pytest.fixture(scope="session")
def write_config():
    """``write_config(folder, process="focal.py", name="job.yaml", **keys) -> path``: the
    Slovenia sample, red and NIR, summer 2015, outputs to ``out/`` beside it."""
    return _write_config


@pytest.fixture
def project(tmp_path):
    """A folder with the focal process module in it."""
    _write_process(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def jobs_client(samples):
    """The combined app (jobs API included) over the session's catalog; anonymous callers may
    submit jobs."""
    from fastapi.testclient import TestClient
    from stacube_services.app import create_app

    from stacube.settings import Settings

    # max_jobs: jobs other tests left queued must not hold this module's job slots
    with TestClient(create_app(Settings(anonymous_jobs=True, max_jobs=1000)), raise_server_exceptions=False) as c:
        yield c


def _http_job(client, body: dict, timeout: float = 300) -> dict:
    r = client.post("/jobs", json=body)
    assert r.status_code in (200, 202), r.text
    job_id = r.json()["id"]
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["state"] == "completed", job["error"]
    return client.get(f"/jobs/{job_id}/report").json()


@pytest.fixture(scope="session")
def http_job():
    """``http_job(client, body) -> report``: ``POST /jobs``, wait for the job to complete."""
    return _http_job
