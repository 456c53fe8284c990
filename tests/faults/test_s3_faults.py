"""A compositing job writing to S3 through a proxy that fails or delays requests.

With a fifth of the requests failing (503 SlowDown / 500 InternalError) and a tenth delayed,
the S3 clients' retries and the job's tile retries carry the job to completion: the same
outputs as without faults, nothing left in staging, the item registered once. With every
request failing, the job fails with a StorageError: no object under the job's prefix, nothing
in staging, nothing registered, the job recorded as failed with the reason.
"""

from __future__ import annotations

import boto3
import pytest

from s3_proxy import FaultyS3Proxy
from stacube.errors import StacubeError
from stacube.jobs.runner import run_composite
from stacube.jobs.spec import build_spec
from stacube.jobs.state import JobStore
from stacube.settings import Settings

S2 = dict(collections=["sentinel-2-l1c-eolearn-sample"], bbox="14.5514,45.8659,14.5642,45.8750",
          datetime="2015-07-01/2015-09-30", method="median", indices=["NDVI"], tile_size=64)


@pytest.fixture
def bucket(s3_server, monkeypatch):
    for key in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(key, raising=False)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    name = "faults"
    try:
        s3.create_bucket(Bucket=name)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    yield s3, name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]


def test_a_job_completes_through_s3_errors_and_delays(samples, s3_server, bucket):
    s3, name = bucket
    spec = build_spec(**S2, output=f"s3://{name}/flaky", output_collection="s3-faults-flaky")
    with FaultyS3Proxy(s3_server, error_rate=0.2, delay_rate=0.1, delay=0.3, seed=7) as proxy:
        report = run_composite(spec, Settings(s3_endpoint=proxy.url), workers=1)
    assert proxy.counts["errors"] >= 3, proxy.counts  # faults were met, and survived
    assert report["status"] == "completed"
    job = report["job_id"]
    stored = keys(s3, name)
    assert f"flaky/{job}/run-1/report.json" in stored and f"flaky/{job}/run-1/cube.zarr/zarr.json" in stored \
        or f"flaky/{job}/run-1/cube.zarr/.zmetadata" in stored
    assert not [k for k in stored if k.startswith("tmp/")]  # staging committed and cleaned
    label = report["steps"][0]["label"]
    assert f"flaky/{job}/run-1/{label}/NDVI.tif" in stored
    assert samples.item_counts().get("s3-faults-flaky") == 1
    print(f"S3 requests through the proxy: {proxy.counts}")


def test_a_job_against_a_failing_s3_fails_cleanly(samples, s3_server, bucket):
    s3, name = bucket
    spec = build_spec(**S2, output=f"s3://{name}/broken", output_collection="s3-faults-broken")
    before = samples.item_counts()
    with FaultyS3Proxy(s3_server, error_rate=1.0, seed=1) as proxy:
        with pytest.raises(StacubeError) as info:
            run_composite(spec, Settings(s3_endpoint=proxy.url), workers=1)
    assert proxy.counts["forwarded"] == 0 and proxy.counts["errors"] > 0
    message = info.value.message
    assert "\n" not in message and ("s3" in message.lower() or "500" in message or "503" in message
                                    or "SlowDown" in message or "InternalError" in message), message
    assert keys(s3, name, "broken/") == []  # nothing under the job's outputs
    assert keys(s3, name, "tmp/") == []  # nor in staging
    assert samples.item_counts() == before and "s3-faults-broken" not in samples.collection_ids()
    job = JobStore(samples.settings).get(spec.job_id(), full=False)
    assert job["state"] == "failed" and job["error"]
    print(f"failed with: {message}")
