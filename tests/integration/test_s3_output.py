"""Composites written to an S3 bucket (moto's S3 server on loopback), then read back by GDAL."""

import json
import os

import boto3
import numpy as np
import rasterio

from stacube.jobs.runner import run_composite
from stacube.jobs.spec import build_spec
from stacube.settings import Settings


def test_composite_to_s3_and_read_back(samples, s3_server, monkeypatch):
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="outputs")
    settings = Settings(s3_endpoint=s3_server)
    spec = build_spec(collections=["sentinel-2-l1c-eolearn-sample"], bbox="14.5514,45.8659,14.5642,45.8750",
                      datetime="2015-07-01/2015-09-30", method="median", indices=["NDVI"],
                      output="s3://outputs/jobs", output_collection="s3-median-test")
    for key in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(key, raising=False)
    report = run_composite(spec, settings, workers=1)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="outputs")["Contents"]}
    job = report["job_id"]
    assert f"jobs/{job}/run-1/report.json" in keys and f"jobs/{job}/run-1/cube.zarr/.zmetadata" in keys
    assert not any(k.startswith("tmp/") for k in keys)  # the staging prefix is cleaned up
    href = report["outputs"]["cogs"][report["steps"][0]["label"]]["NDVI"]
    assert href == f"s3://outputs/jobs/{job}/run-1/{report['steps'][0]['label']}/NDVI.tif"
    with rasterio.open(href) as src:  # GDAL /vsis3/ against the same endpoint
        assert np.isfinite(src.read(1)).sum() == 101 * 100
    stored = json.loads(s3.get_object(Bucket="outputs", Key=f"jobs/{job}/run-1/report.json")["Body"].read())
    assert stored["job_id"] == job
    item = samples.get_item("s3-median-test", report["items"][0])
    assert item["assets"]["NDVI"]["href"] == href
    assert os.environ["AWS_S3_ENDPOINT"].startswith("127.0.0.1:")
