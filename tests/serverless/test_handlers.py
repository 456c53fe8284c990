"""Each handler on its own, with the event shapes AWS sends it."""

from __future__ import annotations

import json

import pytest

from lambdas.local_events import http_event, response_json, sqs_record
from serverless_support import DATA_BUCKET


def call(handler, method, path, **kwargs):
    return handler(http_event(method, path, **kwargs), None)


def sqs_event(body, *, attempt=1, arn="arn:aws:sqs:us-east-1:123456789012:stacube-test-tile"):
    message = {"MessageId": f"m-{attempt}-{abs(hash(str(body)))}", "ReceiptHandle": "r",
               "Body": body if isinstance(body, str) else json.dumps(body),
               "Attributes": {"ApproximateReceiveCount": str(attempt)}}
    return {"Records": [sqs_record(message, arn)]}


# -- HTTP -------------------------------------------------------------------------------------
def test_stac_api_links_carry_the_base_path_and_the_pool_opens_once(handlers):
    stac = handlers["stac_api"]
    landing = call(stac, "GET", "/stac")
    assert landing["statusCode"] == 200
    links = {link["rel"]: link["href"] for link in response_json(landing)["links"]}
    assert links["self"] == "https://abc123.execute-api.us-east-1.amazonaws.com/stac/"
    assert links["data"].endswith("/stac/collections")
    pool = stac.app.state.readpool
    assert pool.get_max_size() == 1
    missing = call(stac, "GET", "/stac/collections/nope")
    assert missing["statusCode"] == 404
    bad = call(stac, "GET", "/stac/search", query={"bbox": "1,2,3"})
    assert 400 <= bad["statusCode"] < 500
    assert stac.app.state.readpool is pool  # one pool per container, not per request


def test_raster_api_serves_under_its_base_path(handlers):
    raster = handlers["raster_api"]
    landing = response_json(call(raster, "GET", "/raster/"))
    assert all(link["href"].startswith("https://abc123.execute-api.us-east-1.amazonaws.com/raster/")
               for link in landing["links"])
    assert raster.app.state.dbpool.max_size == 1
    outside = call(raster, "GET", "/raster/collections/x/tiles/WebMercatorQuad/1/5/5.png")
    assert outside["statusCode"] == 400 and "outside" in response_json(outside)["description"]
    assert call(raster, "GET", "/raster/healthz")["statusCode"] == 200


def test_jobs_api_rejects_bad_input(handlers):
    jobs = handlers["jobs_api"]
    for body, status in (({"collections": ["sentinel-2-l1c-eolearn-sample"]}, 400),
                         ({"collections": ["nope"], "bbox": [0, 0, 1, 1], "datetime": "2020",
                           "method": "median"}, 404)):
        answer = call(jobs, "POST", "/jobs", body=body)
        assert answer["statusCode"] == status, answer
        assert response_json(answer)["description"]
    assert call(jobs, "POST", "/jobs", body="not json")["statusCode"] == 400
    assert call(jobs, "GET", "/jobs/nope")["statusCode"] == 404


# -- ingest -----------------------------------------------------------------------------------
def test_ingest_direct_s3_events_test_events_and_foreign_keys(aws, handlers):
    ingest = handlers["ingest"]
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-01-01T00:00:00Z",
                  "Bucket": DATA_BUCKET, "RequestId": "x", "HostId": "y"}
    assert ingest(sqs_event(test_event), None) == {"batchItemFailures": []}
    outside = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                            "s3": {"bucket": {"name": DATA_BUCKET}, "object": {"key": "elsewhere/a.json"}}}]}
    assert ingest(sqs_event(outside), None) == {"batchItemFailures": []}
    assert ingest(sqs_event("not json"), None)["batchItemFailures"]
    aws.s3.put_object(Bucket=DATA_BUCKET, Key="ingest/unknown-collection/x.json",
                      Body=json.dumps({"type": "Feature", "id": "x", "geometry": None,
                                       "properties": {"datetime": "2020-01-01T00:00:00Z"}, "assets": {}}))
    direct = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                           "s3": {"bucket": {"name": DATA_BUCKET},
                                  "object": {"key": "ingest/unknown-collection/x.json"}}}]}
    with pytest.raises(Exception, match="not registered"):  # direct S3 invocation: Lambda retries
        ingest(direct, None)


# -- queue consumers --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flow_ready(aws, handlers, app_settings):
    """A job planned through the planner handler (its collection registered by ingest); its cloud
    filter gives it a ``scenes`` pass, whose stage move the tests below interrupt."""
    from serverless_support import poller
    from stacube.catalog.pgstac import Catalog
    from stacube_testing import PRODUCTS

    catalog = Catalog(app_settings)
    if "sentinel-2-l1c-eolearn-sample" not in catalog.collection_ids():  # run without test_flow
        from stacube.catalog.register import add_datasets, add_product
        from stacube_testing import SAMPLES

        add_product(catalog, PRODUCTS / "sentinel-2-l1c-eolearn-sample.odc.yaml")
        add_datasets(catalog, [SAMPLES / "s2-l1c-slovenia-eolearn"])
    spec = {"collections": ["sentinel-2-l1c-eolearn-sample"], "bbox": [14.5514, 45.8659, 14.5642, 45.875],
            "datetime": "2015-07-01/2015-09-30", "method": "mean", "bands": ["red"], "tile_size": 64,
            "max_cloud": 100, "output_collection": "slovenia-mean-aws"}
    job_id = response_json(call(handlers["jobs_api"], "POST", "/jobs", body=spec))["id"]
    poller(aws, "plan").drain(handlers["planner"])
    tiles = []
    while True:  # take the tile messages off the queue: the test delivers them itself
        got = aws.sqs.receive_message(QueueUrl=aws.queues["tile"], MaxNumberOfMessages=10)
        if not got.get("Messages"):
            break
        for m in got["Messages"]:
            tiles.append(json.loads(m["Body"]))
            aws.sqs.delete_message(QueueUrl=aws.queues["tile"], ReceiptHandle=m["ReceiptHandle"])
    return {"job_id": job_id, "tiles": tiles}


def test_worker_recovers_a_stage_move_its_previous_attempt_did_not_make(aws, handlers, app_settings,
                                                                          flow_ready):
    from stacube.db.connection import connect
    from stacube.jobs import tasks
    from stacube.jobs.state import JobStore

    job_id, tiles = flow_ready["job_id"], flow_ready["tiles"]
    assert len(tiles) == 4 and {t["stage"] for t in tiles} == {"scenes"}
    store = JobStore(app_settings)
    worker = handlers["worker"]
    for message in tiles[:-1]:
        assert worker(sqs_event(message), None) == {"batchItemFailures": []}
    # the last tile's first attempt ran the tile, claimed the stage move (and its lease) and died
    # preparing
    last = tiles[-1]
    assert tasks.execute_tile(app_settings, job_id, "scenes", last["tile"]) is True
    assert store.advance_stage(job_id, "scenes", "preparing", lease=app_settings.stage_lease)
    for attempt in (1, 2):  # copies while the lease runs: the holder may still be at work
        assert worker(sqs_event(last, attempt=attempt), None) == {"batchItemFailures": []}
        assert store.get(job_id, full=False)["stage"] == "preparing"
    with connect(app_settings, autocommit=True) as conn:  # the holder's lease runs out
        conn.execute("UPDATE stacube.jobs SET lease_until = now() - interval '1 second' WHERE id = %s", (job_id,))
    retried = worker(sqs_event(last, attempt=2), None)  # the next delivery takes over and finishes the move
    assert retried == {"batchItemFailures": []}
    job = store.get(job_id, full=False)
    assert job["stage"] == "composite" and job["sent_stage"] == "composite"
    sent = aws.sqs.receive_message(QueueUrl=aws.queues["tile"], MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in sent]
    assert sorted(b["stage"] for b in bodies) == ["composite"] * 4
    assert all(b["plan"].endswith("/plan.json") and b["selection"].endswith("/selection.json") for b in bodies)
    for m in sent:
        aws.sqs.delete_message(QueueUrl=aws.queues["tile"], ReceiptHandle=m["ReceiptHandle"])
    # a scenes message delivered again after the stage moved on: acknowledged, nothing sent again
    assert worker(sqs_event(tiles[0], attempt=2), None) == {"batchItemFailures": []}
    assert not aws.sqs.receive_message(QueueUrl=aws.queues["tile"], MaxNumberOfMessages=10).get("Messages")
    assert all(store.tile_attempts(job_id, "scenes", t["tile"]) == 1 for t in tiles)


def test_stale_bad_and_cancelled_messages(aws, handlers, app_settings, flow_ready):
    from stacube.jobs.state import JobStore

    job_id = flow_ready["job_id"]
    worker, planner, finalize = handlers["worker"], handlers["planner"], handlers["finalize"]
    old_run = {"job_id": job_id, "run": 99, "stage": "composite", "tile": "0_0"}
    assert worker(sqs_event(old_run), None) == {"batchItemFailures": []}  # ignored
    assert JobStore(app_settings).tile_attempts(job_id, "composite", "0_0") == 0
    bad = worker(sqs_event({"job_id": job_id, "stage": "nope", "tile": "0_0"}), None)
    assert len(bad["batchItemFailures"]) == 1  # malformed: fails, goes to the dead-letter queue
    assert planner(sqs_event("{}"), None)["batchItemFailures"]
    assert finalize(sqs_event({"job_id": "unknown", "run": 1}), None) == {"batchItemFailures": []}
    JobStore(app_settings).cancel(job_id)
    cancelled = {"job_id": job_id, "run": JobStore(app_settings).get(job_id, full=False)["run"],
                 "stage": "composite", "tile": "0_0"}
    assert worker(sqs_event(cancelled), None) == {"batchItemFailures": []}
    assert JobStore(app_settings).tile_attempts(job_id, "composite", "0_0") == 0


def test_a_tile_failing_on_its_last_attempt_fails_the_job(aws, handlers, app_settings, capsys):
    from stacube.jobs.state import JobStore

    store = JobStore(app_settings)
    job_id = "broken-job"
    store.submit(job_id, {"collections": ["x"]})
    store.update(job_id, state="running", stage="scenes", plan={"not": "a plan"})
    store.add_tiles(job_id, "scenes", ["0_0"])
    message = {"job_id": job_id, "run": 1, "stage": "scenes", "tile": "0_0"}
    first = handlers["worker"](sqs_event(message, attempt=1), None)
    assert first["batchItemFailures"] and store.state(job_id) == "running"  # retried
    last = handlers["worker"](sqs_event(message, attempt=3), None)
    assert last["batchItemFailures"] and store.state(job_id) == "failed"
    metric = [json.loads(line) for line in capsys.readouterr().out.splitlines()
              if '"JobsFailed"' in line]
    assert metric and metric[-1]["Stage"] == "test" and metric[-1]["JobsFailed"] == 1
    assert metric[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "stacube"


def _in_function_process(script: str, function: str, root_path: str, **extra_env: str):
    """Run ``script`` in a Python process of its own as Lambda function ``function`` (its
    ``STACUBE_ROOT_PATH``, and ``extra_env``), from the repository root; the finished process,
    asserted to succeed."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "AWS_LAMBDA_FUNCTION_NAME": function, "STACUBE_ROOT_PATH": root_path, **extra_env}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_raster_function_process_runs_without_xarray(samples):
    """In its own Lambda process the raster function keeps xarray out (cold start) and still
    renders an index tile of a source collection."""
    script = (
        "import json, sys\n"
        "import lambdas.raster_api.handler as h\n"
        "from lambdas.local_events import http_event, response_body\n"
        "assert sys.modules.get('xarray', 'absent') is None, 'xarray was imported'\n"
        "event = http_event('GET', '/raster/collections/sentinel-2-l1c-eolearn-sample/tiles/"
        "WebMercatorQuad/14/8854/5837.png', query={'index': 'NDVI'})\n"
        "r = h.handler(event, None)\n"
        "print(r['statusCode'], len(response_body(r)))\n"
    )
    out = _in_function_process(script, "stacube-raster", "/raster")
    status, size = out.stdout.split()[-2:]
    assert status == "200" and int(size) > 1000


def test_raster_function_instances_share_low_zoom_tiles_on_s3(samples, s3_server):
    """Two instances of the raster function (two processes, as the stack sets them up: a tile
    store under tiles/ of the outputs bucket): the second answers the first's z8 tile from S3."""
    import boto3
    import morecantile

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="instances-outputs")
    tile = morecantile.tms.get("WebMercatorQuad").tile(14.556, 45.87, 8)
    script = (
        "import hashlib, lambdas.raster_api.handler as h\n"
        "from lambdas.local_events import http_event, response_body\n"
        "event = http_event('GET', '/raster/collections/sentinel-2-l1c-eolearn-sample/tiles/"
        f"WebMercatorQuad/8/{tile.x}/{tile.y}.png', query={{'assets': 'B04', 'rescale': '0,3000'}})\n"
        "r = h.handler(event, None)\n"
        "print(r['statusCode'], r['headers'].get('x-tile-cache'), hashlib.sha256(response_body(r)).hexdigest())\n"
    )
    env = {"STACUBE_TILE_STORE": "s3://instances-outputs/tiles", "STACUBE_S3_ENDPOINT": s3_server,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    first = _in_function_process(script, "stacube-raster", "/raster", **env).stdout.split()[-3:]
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_server).list_objects_v2(
        Bucket="instances-outputs").get("Contents", [])]
    second = _in_function_process(script, "stacube-raster", "/raster", **env).stdout.split()[-3:]
    assert first[:2] == ["200", "miss"] and second[:2] == ["200", "hit"] and first[2] == second[2]
    assert len(keys) == 1 and keys[0].startswith("tiles/8/")


@pytest.mark.parametrize("function, root", [("stac_api", "/stac"), ("raster_api", "/raster"), ("jobs_api", "/jobs")])
def test_an_http_function_leaves_its_init_phase_with_the_collector_on(database, function, root):
    """The collector is off while a handler module builds its app (cold start), then on again,
    with what the init phase built frozen."""
    script = (
        "import gc\n"
        f"import lambdas.{function}.handler as h\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 50000, callable(h.handler))\n"
    )
    out = _in_function_process(script, f"stacube-{function}", root)
    assert out.stdout.split()[-3:] == ["True", "True", "True"]


def test_stac_function_process_imports_no_array_stack(database):
    """In its own Lambda process the STAC function imports neither the array stack nor the
    ingest code (cold start: the read prefixes and the sharing routes do not need them) and
    still answers its access route."""
    script = (
        "import sys\n"
        "import lambdas.stac_api.handler as h\n"
        "from lambdas.local_events import http_event, response_json\n"
        "heavy = ('numpy', 'pyproj', 'yaml', 'xarray', 'rasterio', 'pandas', 'odc', 'stacube.catalog.ingest')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, f'imported: {loaded}'\n"
        "r = h.handler(http_event('GET', '/stac/access'), None)\n"
        "print(r['statusCode'], response_json(r)['principal']['kind'])\n"
    )
    out = _in_function_process(script, "stacube-stac", "/stac")
    assert out.stdout.split()[-2:] == ["200", "anonymous"]


# -- ingest at scale --------------------------------------------------------------------------
def _s3_event(key, size=None):
    obj = {"key": key, **({"size": size} if size is not None else {})}
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": DATA_BUCKET}, "object": obj}}]}


def test_cogs_of_one_scene_arriving_apart_or_at_once_end_up_in_one_item(aws, handlers, app_settings):
    import threading

    from stacube.catalog.pgstac import Catalog
    from stacube_testing import SAMPLES

    catalog = Catalog(app_settings)
    catalog.upsert_collection({
        "type": "Collection", "stac_version": "1.1.0", "id": "cog-merge", "description": "COGs", "license": "other",
        "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}})
    scene = SAMPLES / "s2-l1c-slovenia-eolearn" / "S2_L1C_20150711T100008"
    ingest = handlers["ingest"]
    for band in ("B04", "B08", "B02", "B03"):
        aws.s3.put_object(Bucket=DATA_BUCKET, Key=f"ingest/cog-merge/S2A_20150711/{band}.tif",
                          Body=(scene / f"{band}.tif").read_bytes())
    for band in ("B04", "B08"):  # two batches, one after the other
        assert ingest(sqs_event(_s3_event(f"ingest/cog-merge/S2A_20150711/{band}.tif")), None) == {"batchItemFailures": []}
    answers = []
    threads = [threading.Thread(target=lambda b=b: answers.append(ingest(sqs_event(
        _s3_event(f"ingest/cog-merge/S2A_20150711/{b}.tif")), None))) for b in ("B02", "B03")]
    for t in threads:  # two batches at the same time
        t.start()
    for t in threads:
        t.join()
    assert answers == [{"batchItemFailures": []}] * 2
    item = catalog.get_item("cog-merge", "S2A_20150711")
    assert set(item["assets"]) == {"B02", "B03", "B04", "B08"}
    assert item["properties"]["datetime"].startswith("2015-07-11")


def test_a_large_ndjson_is_streamed_checked_first_then_loaded_in_chunks(aws, handlers, app_settings, monkeypatch):
    import lambdas.ingest.handler as module
    from stacube.catalog.pgstac import Catalog

    monkeypatch.setattr(module, "STREAM_BYTES", 100)
    monkeypatch.setattr(module, "STREAM_CHUNK", 2)
    Catalog(app_settings).upsert_collection({
        "type": "Collection", "stac_version": "1.1.0", "id": "streamed", "description": "ndjson", "license": "other",
        "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}}})

    def item(i):
        return json.dumps({"type": "Feature", "stac_version": "1.1.0", "id": f"s{i}", "geometry": {
            "type": "Point", "coordinates": [14.5, 45.9]}, "bbox": [14.5, 45.9, 14.5, 45.9],
            "properties": {"datetime": f"2020-01-0{i + 1}T00:00:00Z"}, "links": [], "assets": {}})

    good = "\n".join(item(i) for i in range(5)) + "\n"
    aws.s3.put_object(Bucket=DATA_BUCKET, Key="ingest/streamed/items.ndjson", Body=good)
    answer = handlers["ingest"](sqs_event(_s3_event("ingest/streamed/items.ndjson", len(good))), None)
    assert answer == {"batchItemFailures": []}
    assert Catalog(app_settings).item_counts()["streamed"] == 5
    bad = "\n".join(item(i) for i in range(5, 8)) + "\n{not json\n"
    aws.s3.put_object(Bucket=DATA_BUCKET, Key="ingest/streamed/bad.ndjson", Body=bad)
    answer = handlers["ingest"](sqs_event(_s3_event("ingest/streamed/bad.ndjson", len(bad)), attempt=3), None)
    assert len(answer["batchItemFailures"]) == 1
    assert Catalog(app_settings).item_counts()["streamed"] == 5  # checked before anything was loaded
