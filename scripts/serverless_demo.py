"""`make serverless-demo`: the AWS deployment's whole flow on this machine, no AWS account.

The real Lambda handlers (lambdas/) receive the event shapes AWS would send them, against:

* moto's server on loopback (S3, SQS, Secrets Manager), found by boto3 through the standard
  ``AWS_ENDPOINT_URL`` and by the library's S3 code (obstore, GDAL) through
  ``STACUBE_S3_ENDPOINT``;
* the embedded PostgreSQL of ``stacube db start`` (port 5439), in which the db-bootstrap handler
  creates a separate database, ``stacube_serverless``, and the login role ``stacube_app``.

Steps: bootstrap the database (CloudFormation Create) -> drop the Slovenia sample (product YAML,
STAC Item JSON, COGs) in the data bucket -> ingest from the S3 notifications on the ingest queue ->
``POST /jobs`` (API Gateway event) -> planner, workers, finalize from the messages they produce ->
``GET /jobs/{id}`` -> a PNG tile of the result through the raster handler, the Zarr cube read from
S3 with xarray, the items through the STAC handler. Outputs land in ``.stacube/serverless-demo/``.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV_BIN = Path(sys.executable).parent
COLLECTION = "sentinel-2-l1c-eolearn-sample"
STACK = "s2-l1c-slovenia-eolearn"
DATA, OUTPUTS = "stacube-demo-data", "stacube-demo-outputs"
DATABASE, APP_USER = "stacube_serverless", "stacube_app"
JOB = {"collections": [COLLECTION], "bbox": [14.5514, 45.8659, 14.5642, 45.875],
       "datetime": "2015-07-01/2015-09-30", "method": "median", "indices": ["NDVI"],
       "tile_size": 64, "output_collection": "slovenia-median-serverless"}
OUT = ROOT / ".stacube" / "serverless-demo"


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


class Capture(BaseHTTPRequestHandler):
    """Stands in for CloudFormation's pre-signed response URL."""

    answers: list = []

    def do_PUT(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        Capture.answers.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def setup_aws(sqs, s3, secrets_client, db_port: int) -> dict:
    queues, dlqs = {}, {}
    for bucket in (DATA, OUTPUTS):
        s3.create_bucket(Bucket=bucket)
    for name in ("ingest", "plan", "tile", "finalize"):
        dlq = sqs.create_queue(QueueName=f"stacube-demo-{name}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        dlqs[name] = dlq
        queues[name] = sqs.create_queue(QueueName=f"stacube-demo-{name}", Attributes={
            "VisibilityTimeout": "900",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})})["QueueUrl"]
        print(f"queue {name}: {queues[name]} (dead letters: {dlq})")
    ingest_arn = sqs.get_queue_attributes(QueueUrl=queues["ingest"], AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=DATA, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": ingest_arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "ingest/"}]}}}]})
    print(f"buckets {DATA}, {OUTPUTS}; s3://{DATA}/ingest/* -> ingest queue")
    server = {"host": "127.0.0.1", "port": db_port, "engine": "postgres"}
    admin = secrets_client.create_secret(Name="stacube-demo-admin", SecretString=json.dumps(
        {**server, "username": "postgres", "password": "unused-locally", "dbname": "postgres"}))["ARN"]
    app = secrets_client.create_secret(Name="stacube-demo-app", SecretString=json.dumps(
        {**server, "username": APP_USER, "password": secrets.token_urlsafe(24), "dbname": DATABASE}))["ARN"]
    print(f"secrets: admin {admin}\n         app   {app}")
    return {"queues": queues, "dlqs": dlqs, "admin": admin, "app": app}


def load(name: str, **env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return importlib.import_module(f"lambdas.{name}.handler").handler
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sample_items() -> list[dict]:
    from stacube.catalog.ingest import iter_manifest
    from stacube.catalog.products import read_product_file

    folder = ROOT / "data" / "samples" / STACK
    product = read_product_file(ROOT / "data" / "products" / f"{COLLECTION}.odc.yaml")
    items = []
    for found in iter_manifest(folder, collections={COLLECTION: product}):
        for asset in found.doc["assets"].values():
            asset["href"] = f"../../scenes/{STACK}/{Path(asset['href']).relative_to(folder).as_posix()}"
        items.append(found.doc)
    return items


def show(result, what: str) -> None:
    print(f"{what}: {result.invocations} invocations, {result.succeeded} messages done, "
          f"{result.failed} failed")


def main() -> int:
    subprocess.run([str(VENV_BIN / "stacube"), "db", "start"], check=True, cwd=ROOT)
    os.environ.update({"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"})
    db_port = int(os.environ.get("STACUBE_DB_PORT", "5439"))
    say("moto server (S3, SQS, Secrets Manager) on loopback")
    from lambdas.local_events import free_port, start_moto_server

    moto, endpoint = start_moto_server()
    print(f"endpoint {endpoint}")
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, "STACUBE_S3_ENDPOINT": endpoint})
    capture = HTTPServer(("127.0.0.1", free_port()), Capture)
    threading.Thread(target=capture.serve_forever, daemon=True).start()
    try:
        import boto3

        from lambdas.local_events import QueuePoller, cfn_event, http_event, response_body, response_json

        sqs, s3 = boto3.client("sqs"), boto3.client("s3")
        aws = setup_aws(sqs, s3, boto3.client("secretsmanager"), db_port)

        say("db-bootstrap: CloudFormation Create")
        url = f"http://127.0.0.1:{capture.server_address[1]}/response"
        props = {"AdminSecretArn": aws["admin"], "AppSecretArn": aws["app"], "DatabaseName": DATABASE,
                 "PgstacVersion": "0.10.0"}
        answer = load("db_bootstrap")(cfn_event("Create", url, props), None)
        print(f"answer PUT to the response URL: {answer['Status']} - {answer['Reason']}")
        if answer["Status"] != "SUCCESS":
            return 1

        os.environ.update({
            "STACUBE_STAGE": "demo", "STACUBE_DATABASE_SECRET_ARN": aws["app"], "STACUBE_DB_POOL_SIZE": "1",
            "STACUBE_DATA_BUCKET": DATA, "STACUBE_OUTPUT_BUCKET": OUTPUTS,
            "STACUBE_OUTPUT": f"s3://{OUTPUTS}/outputs", "STACUBE_TMP_PREFIX": "tmp/",
            "STACUBE_INGEST_PREFIX": "ingest/"})
        for key in ("STACUBE_DATABASE_URL", "PGHOST"):
            os.environ.pop(key, None)
        h = {
            "ingest": load("ingest"),
            "jobs_api": load("jobs_api", STACUBE_ROOT_PATH="/jobs", STACUBE_PLAN_QUEUE_URL=aws["queues"]["plan"]),
            "planner": load("planner", STACUBE_TILE_QUEUE_URL=aws["queues"]["tile"]),
            "worker": load("worker", STACUBE_FINALIZE_QUEUE_URL=aws["queues"]["finalize"]),
            "finalize": load("finalize"),
            "stac_api": load("stac_api", STACUBE_ROOT_PATH="/stac"),
            "raster_api": load("raster_api", STACUBE_ROOT_PATH="/raster"),
        }
        poll = {name: QueuePoller(sqs, url, batch_size=10 if name == "ingest" else 1)
                for name, url in aws["queues"].items()}

        say("drop the sample in s3://%s: product YAML, then COGs (scenes/) and STAC Items (ingest/)" % DATA)
        s3.put_object(Bucket=DATA, Key=f"ingest/{COLLECTION}/product.yaml",
                      Body=(ROOT / "data" / "products" / f"{COLLECTION}.odc.yaml").read_bytes())
        show(poll["ingest"].drain(h["ingest"]), "ingest (collection)")
        folder = ROOT / "data" / "samples" / STACK
        for tif in sorted(folder.rglob("*.tif")):
            s3.put_object(Bucket=DATA, Key=f"scenes/{STACK}/{tif.relative_to(folder).as_posix()}",
                          Body=tif.read_bytes())
        items = sample_items()
        for item in items:
            s3.put_object(Bucket=DATA, Key=f"ingest/{COLLECTION}/{item['id']}.json", Body=json.dumps(item))
        print(f"{len(list(folder.rglob('*.tif')))} COGs, {len(items)} items uploaded")
        show(poll["ingest"].drain(h["ingest"]), "ingest (items)")

        say("POST /jobs through the jobs-api handler (API Gateway HTTP API event)")
        posted = h["jobs_api"](http_event("POST", "/jobs", body=JOB), None)
        job = response_json(posted)
        print(f"HTTP {posted['statusCode']}: job {job.get('id')} {job.get('state')}")
        if posted["statusCode"] >= 400:
            return 1
        job_id = job["id"]

        say("planner <- plan queue; workers <- tile queue; finalize <- finalize queue")
        show(poll["plan"].drain(h["planner"]), "planner")
        show(poll["tile"].drain(h["worker"]), "worker")
        show(poll["finalize"].drain(h["finalize"]), "finalize")
        state = response_json(h["jobs_api"](http_event("GET", f"/jobs/{job_id}"), None))
        progress = state["progress"]
        print(f"GET /jobs/{job_id}: {state['state']}, stage {progress['stage']}, tiles "
              f"{progress['tiles_done']}/{progress['tiles_total']} done, {progress['tiles_failed']} failed")
        if state["state"] != "completed":
            print(f"error: {state['error']}")
            return 1
        report = state["report"]
        print("outputs:", json.dumps(report["outputs"], indent=1)[:800])

        say("the result through the STAC and raster handlers, and the Zarr with xarray")
        item_id = report["items"][0]
        found = response_json(h["stac_api"](http_event(
            "GET", "/stac/search", query={"collections": JOB["output_collection"]}), None))
        print(f"GET /stac/search: {[f['id'] for f in found['features']]}")
        import morecantile

        t = morecantile.tms.get("WebMercatorQuad").tile(14.558, 45.870, 15)
        path = (f"/raster/collections/{JOB['output_collection']}/items/{item_id}/tiles/WebMercatorQuad/"
                f"{t.z}/{t.x}/{t.y}.png")
        tile = h["raster_api"](http_event("GET", path, query={"assets": "NDVI", "rescale": "-1,1",
                                                             "colormap_name": "rdylgn"}), None)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "ndvi-tile.png").write_bytes(response_body(tile))
        print(f"GET {path}: HTTP {tile['statusCode']}, {len(response_body(tile))} bytes -> {OUT / 'ndvi-tile.png'}")
        import xarray as xr
        from obstore.store import S3Store
        from zarr.storage import ObjectStore

        zarr_key = report["outputs"]["zarr"].split(f"s3://{OUTPUTS}/", 1)[1]
        store = S3Store(OUTPUTS, prefix=zarr_key, endpoint=endpoint,
                        client_options={"allow_http": True}, virtual_hosted_style_request=False,
                        region="us-east-1")
        cube = xr.open_zarr(ObjectStore(store, read_only=True), consolidated=True)
        print(cube)
        ndvi = cube["NDVI"].isel(time=0)
        print(f"NDVI: mean {float(ndvi.mean()):.3f}, {int(ndvi.notnull().sum())} valid pixels")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=OUTPUTS)["Contents"]]
        print(f"s3://{OUTPUTS}: {len(keys)} objects, none under tmp/: {not any(k.startswith('tmp/') for k in keys)}")
        return 0
    finally:
        capture.shutdown()
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
