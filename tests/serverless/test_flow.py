"""The whole serverless flow with the real handlers and real event shapes, no AWS account:
scenes dropped in S3 -> ingest (S3 events through SQS) -> POST /jobs -> planner -> workers ->
finalize -> COGs and Zarr in S3, registered -> a tile through the raster API, the Zarr through
xarray, the items through the STAC API."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import rasterio

from lambdas.local_events import http_event, response_body, response_json
from serverless_support import DATA_BUCKET, OUTPUT_BUCKET, poller
from stacube_testing import PRODUCTS, SAMPLES

COLLECTION = "sentinel-2-l1c-eolearn-sample"
STACK = "s2-l1c-slovenia-eolearn"
JOB = {"collections": [COLLECTION], "bbox": [14.5514, 45.8659, 14.5642, 45.875],
       "datetime": "2015-07-01/2015-09-30", "method": "median", "indices": ["NDVI"],
       "tile_size": 64, "output_collection": "slovenia-median-aws"}
COG_COLLECTION = {
    "type": "Collection", "stac_version": "1.1.0", "id": "cog-drops", "description": "COGs dropped in S3",
    "license": "other", "links": [],
    "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
}


def sample_items() -> list[dict]:
    """The Slovenia stack as STAC Items whose assets are relative to ingest/<collection>/."""
    from stacube.catalog.ingest import iter_manifest
    from stacube.catalog.products import read_product_file

    product = read_product_file(PRODUCTS / f"{COLLECTION}.odc.yaml")
    items = []
    for found in iter_manifest(SAMPLES / STACK, collections={COLLECTION: product}):
        doc = found.doc
        for asset in doc["assets"].values():
            local = Path(asset["href"]).relative_to(SAMPLES / STACK)
            asset["href"] = f"../../scenes/{STACK}/{local.as_posix()}"
        items.append(doc)
    return items


def put(aws, key, body):
    aws.s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=body)


def call(handler, method, path, **kwargs):
    return handler(http_event(method, path, **kwargs), None)


def catalog_counts(settings):
    from stacube.catalog.pgstac import Catalog

    return Catalog(settings).item_counts()


@pytest.fixture(scope="module")
def flow(aws, handlers, app_settings):
    """Runs the flow once; the tests below check its parts."""
    record: dict = {}
    ingest = poller(aws, "ingest", batch_size=10)
    # 1. collections first: an ODC product (YAML) and a STAC Collection (JSON)
    put(aws, f"ingest/{COLLECTION}/product.yaml", (PRODUCTS / f"{COLLECTION}.odc.yaml").read_bytes())
    put(aws, "ingest/cog-drops/collection.json", json.dumps(COG_COLLECTION))
    record["ingest_collections"] = ingest.drain(handlers["ingest"])
    # 2. scenes: COGs outside the prefix + item JSON under it; COGs dropped as a COG item; a bad one
    for tif in sorted((SAMPLES / STACK).rglob("*.tif")):
        key = f"scenes/{STACK}/{tif.relative_to(SAMPLES / STACK).as_posix()}"
        aws.s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=tif.read_bytes())
    items = sample_items()
    for item in items:
        put(aws, f"ingest/{COLLECTION}/{item['id']}.json", json.dumps(item))
    first = items[0]
    for band in ("B04", "B08"):
        src = SAMPLES / STACK / first["assets"][band]["href"].split(f"scenes/{STACK}/", 1)[1]
        put(aws, f"ingest/cog-drops/S2A_20150711/{band}.tif", src.read_bytes())
    put(aws, "ingest/cog-drops/broken.json", b'{"type": "Feature", "id": ')
    record["items"] = items
    record["ingest_items"] = ingest.drain(handlers["ingest"])
    record["counts_after_ingest"] = catalog_counts(app_settings)
    # re-delivery of one S3 event (SQS delivers at least once)
    event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                          "eventName": "ObjectCreated:Put",
                          "s3": {"bucket": {"name": DATA_BUCKET},
                                 "object": {"key": f"ingest/{COLLECTION}/{first['id']}.json"}}}]}
    aws.sqs.send_message(QueueUrl=aws.queues["ingest"], MessageBody=json.dumps(event))
    record["ingest_again"] = ingest.drain(handlers["ingest"])
    record["counts_after_redelivery"] = catalog_counts(app_settings)
    record["ingest_dlq"] = aws.sqs.receive_message(QueueUrl=aws.dlqs["ingest"], MaxNumberOfMessages=10)

    # 3. the job over HTTP
    record["bad_post"] = call(handlers["jobs_api"], "POST", "/jobs", body={**JOB, "bbox": [14.6, 45.8, 14.5, 45.9]})
    posted = call(handlers["jobs_api"], "POST", "/jobs", body=JOB)
    record["post"] = posted
    job_id = response_json(posted)["id"]
    record["job_id"] = job_id

    # 4. planner, workers, finalize, from the messages they produce
    plans = poller(aws, "plan")
    record["plan"] = plans.drain(handlers["planner"])
    aws.sqs.send_message(QueueUrl=aws.queues["plan"], MessageBody=record["plan"].outcomes[0]["body"])
    record["plan_again"] = plans.drain(handlers["planner"])
    tiles = poller(aws, "tile")
    duplicated: list[str] = []

    def worker_with_a_duplicate(event, context):
        answer = handlers["worker"](event, context)
        body = json.loads(event["Records"][0]["body"])
        if body["stage"] == "composite" and not duplicated:  # SQS may deliver twice
            duplicated.append(event["Records"][0]["body"])
            aws.sqs.send_message(QueueUrl=aws.queues["tile"], MessageBody=duplicated[0])
        return answer

    record["tiles"] = tiles.drain(worker_with_a_duplicate)
    finals = poller(aws, "finalize")
    record["finalize"] = finals.drain(handlers["finalize"])
    aws.sqs.send_message(QueueUrl=aws.queues["finalize"], MessageBody=record["finalize"].outcomes[0]["body"])
    record["finalize_again"] = finals.drain(handlers["finalize"])
    record["job"] = response_json(call(handlers["jobs_api"], "GET", f"/jobs/{job_id}"))
    record["jobs"] = response_json(call(handlers["jobs_api"], "GET", "/jobs"))
    return record


def test_ingest_registers_collections_items_and_cogs(flow, app_settings):
    from stacube.catalog.pgstac import Catalog

    assert flow["ingest_collections"].failed == 0
    counts = flow["counts_after_ingest"]
    assert counts[COLLECTION] == len(flow["items"]) == 5
    assert counts["cog-drops"] == 1  # two COGs in one folder: one item, two assets
    cog_item = Catalog(app_settings).get_item("cog-drops", "S2A_20150711")
    assert set(cog_item["assets"]) == {"B04", "B08"}
    assert cog_item["assets"]["B04"]["href"] == f"s3://{DATA_BUCKET}/ingest/cog-drops/S2A_20150711/B04.tif"
    assert cog_item["properties"]["datetime"].startswith("2015-07-11")
    item = Catalog(app_settings).get_item(COLLECTION, flow["items"][0]["id"])
    assert all(a["href"].startswith(f"s3://{DATA_BUCKET}/scenes/{STACK}/") for a in item["assets"].values())


def test_a_bad_object_goes_to_the_dead_letter_queue_and_redelivery_is_harmless(flow):
    failed = [o for o in flow["ingest_items"].outcomes if not o["ok"]]
    assert failed and all("broken.json" in o["body"] for o in failed)
    assert sorted(o["attempt"] for o in failed) == [1, 2, 3]  # retried at once, three deliveries
    dead = flow["ingest_dlq"].get("Messages") or []
    assert len(dead) == 1 and "broken.json" in dead[0]["Body"]
    assert flow["ingest_again"].succeeded == 1 and flow["ingest_again"].failed == 0
    assert flow["counts_after_redelivery"] == flow["counts_after_ingest"]


def test_jobs_api_validates_and_queues(flow):
    bad = flow["bad_post"]
    assert bad["statusCode"] == 400, bad
    assert "min must be less than max" in response_json(bad)["description"]
    assert flow["post"]["statusCode"] == 202
    assert flow["plan"].succeeded == 1
    assert flow["plan_again"].succeeded == 1  # a duplicate plan message is acknowledged...
    tile_msgs = [json.loads(o["body"]) for o in flow["tiles"].outcomes]
    # a median job needs no scene pass: the planner sends the composite tiles at once
    assert not [m for m in tile_msgs if m["stage"] == "scenes"]
    composite = [m for m in tile_msgs if m["stage"] == "composite"]
    assert len(composite) == 4 + 1  # ... none twice (the one extra is the duplicate delivery)


def test_workers_and_finalize_complete_the_job_once(flow, handlers, app_settings):
    from stacube.db.connection import connect

    assert flow["tiles"].failed == 0 and flow["finalize"].failed == 0
    composite = [o for o in flow["tiles"].outcomes if json.loads(o["body"])["stage"] == "composite"]
    assert len(composite) == 5  # four tiles and one duplicate delivery
    job = flow["job"]
    assert job["state"] == "completed", job["error"]
    assert job["progress"]["tiles_done"] == job["progress"]["tiles_total"] == 4
    assert job["progress"]["tiles_failed"] == 0
    with connect(app_settings) as conn:
        attempts = conn.execute("SELECT stage, tile, attempts FROM stacube.job_tiles WHERE job_id = %s",
                                (flow["job_id"],)).fetchall()
    assert len(attempts) == 4 and all(a[2] == 1 for a in attempts)  # no tile ran twice
    assert {a[0] for a in attempts} == {"composite"}
    scenes = {s["item_id"]: s for s in job["report"]["scenes"]}  # counted by the composite tiles
    assert len(scenes) == 5 and scenes["S2_L1C_20150711T100008"]["clear_percent"] == 100.0
    assert scenes["S2_L1C_20150731T100009"]["clear_pixels"] == 0 and scenes["S2_L1C_20150731T100009"]["valid_pixels"] > 0
    assert catalog_counts(app_settings)[JOB["output_collection"]] == len(job["report"]["steps"]) == 1
    assert flow["finalize_again"].succeeded == 1  # acknowledged, nothing redone
    assert any(j["id"] == flow["job_id"] for j in flow["jobs"]["jobs"])
    cog = job["downloads"]["cogs"][job["report"]["steps"][0]["label"]]["NDVI"]
    assert cog.startswith("http") and "Signature" in cog  # a presigned S3 URL that works
    with urllib.request.urlopen(cog) as answer:
        assert answer.read(4) == b"II*\x00"  # a (little-endian) TIFF
    # links name objects: the cube's consolidated metadata, and its keys through the jobs API
    with urllib.request.urlopen(job["downloads"]["zarr_metadata"]) as answer:
        assert "NDVI/.zarray" in json.loads(answer.read())["metadata"]
    assert job["downloads"]["zarr"].endswith(f"/jobs/{flow['job_id']}/zarr")
    key = call(handlers["jobs_api"], "GET", f"/jobs/{flow['job_id']}/zarr/NDVI/.zarray")
    assert key["statusCode"] == 307 and "Signature" in key["headers"]["location"]
    with urllib.request.urlopen(key["headers"]["location"]) as answer:
        assert json.loads(answer.read())["zarr_format"] == 2
    assert call(handlers["jobs_api"], "GET", f"/jobs/{flow['job_id']}/zarr/a/../b")["statusCode"] == 404


def test_outputs_are_in_s3_and_match_a_local_run(flow, aws, samples, tmp_path_factory):
    from stacube.jobs.runner import run_composite
    from stacube.jobs.spec import build_spec

    job_id = flow["job_id"]
    keys = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=OUTPUT_BUCKET)["Contents"]}
    label = flow["job"]["report"]["steps"][0]["label"]
    run = f"outputs/{job_id}/run-1"  # written in place, nothing copied at the commit
    assert {f"{run}/report.json", f"{run}/cube.zarr/.zmetadata", f"{run}/{label}/NDVI.tif"} <= keys
    assert not any(k.startswith("tmp/") for k in keys)
    local = run_composite(build_spec(**{**JOB, "tile_size": 2048, "output_collection": "slovenia-local"},
                                     output=str(tmp_path_factory.mktemp("local"))), samples.settings, workers=1)
    with rasterio.open(local["outputs"]["cogs"][label]["NDVI"]) as src:
        expected = src.read(1)
    with rasterio.open(f"s3://{OUTPUT_BUCKET}/{run}/{label}/NDVI.tif") as src:
        got = src.read(1)
    assert np.isfinite(got).sum() == 101 * 100
    assert np.allclose(got, expected, equal_nan=True)  # four Lambda tiles == one local tile

    import xarray as xr
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    store = S3Store(OUTPUT_BUCKET, prefix=f"{run}/cube.zarr", endpoint=aws.endpoint,
                    client_options={"allow_http": True}, virtual_hosted_style_request=False,
                    region="us-east-1")
    cube = xr.open_zarr(ObjectStore(store, read_only=True), consolidated=True)
    assert cube["NDVI"].shape == (1, *expected.shape)
    assert np.allclose(cube["NDVI"].values[0], expected, equal_nan=True)


def test_the_outputs_are_searchable_and_tileable(flow, handlers):
    import morecantile

    collection = JOB["output_collection"]
    item_id = flow["job"]["report"]["items"][0]
    found = response_json(call(handlers["stac_api"], "GET", "/stac/search",
                               query={"collections": collection}))
    assert [f["id"] for f in found["features"]] == [item_id]
    self_link = next(link["href"] for link in found["features"][0]["links"] if link["rel"] == "self")
    assert self_link.startswith("https://abc123.execute-api.us-east-1.amazonaws.com/stac/collections/")
    tile = morecantile.tms.get("WebMercatorQuad").tile(14.558, 45.870, 15)
    path = f"/raster/collections/{collection}/items/{item_id}/tiles/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png"
    answer = call(handlers["raster_api"], "GET", path, query={"assets": "NDVI", "rescale": "-1,1",
                                                               "colormap_name": "rdylgn"})
    assert answer["statusCode"] == 200, response_body(answer)[:300]
    assert answer["headers"]["content-type"] == "image/png" and answer["isBase64Encoded"]
    assert response_body(answer)[:8] == b"\x89PNG\r\n\x1a\n"
    # what CloudFront may keep: a job's tiles for good, a search for a minute, an error never
    assert answer["headers"]["cache-control"] == "public, max-age=31536000, immutable"
    searched = call(handlers["stac_api"], "GET", "/stac/search", query={"collections": collection})
    assert searched["headers"]["cache-control"] == "public, max-age=60"
    mosaic = call(handlers["raster_api"], "GET", f"/raster/collections/{COLLECTION}/tiles/WebMercatorQuad/"
                  f"{tile.z}/{tile.x}/{tile.y}.png", query={"assets": "B04"})
    assert mosaic["headers"]["cache-control"] == ("public, max-age=300" if mosaic["statusCode"] == 200
                                                  else "no-store"), mosaic["statusCode"]
    missing = call(handlers["stac_api"], "GET", "/stac/collections/nope")
    assert missing["statusCode"] == 404 and missing["headers"]["cache-control"] == "no-store"
    private = call(handlers["stac_api"], "GET", "/stac/search", query={"collections": collection},
                   headers={"x-api-key": "someone"})
    assert private["headers"].get("cache-control") in ("private, max-age=60", "no-store")
