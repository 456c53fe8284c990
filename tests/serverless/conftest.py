"""The AWS side of stacube, here: moto's server (S3, SQS, Secrets Manager) on loopback, the
session's PostgreSQL cluster, and the real Lambda handlers fed with real event shapes.

Every boto3 client finds moto through the standard ``AWS_ENDPOINT_URL``; the library's own S3
access (obstore, GDAL) through ``STACUBE_S3_ENDPOINT``. The catalog of these tests is a second
database of the session cluster, created by the ``db-bootstrap`` handler; the other handlers
reach it as the app role, through the app secret (``STACUBE_DATABASE_SECRET_ARN``), like on AWS.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from serverless_support import (DATA_BUCKET, DATABASE, OUTPUT_BUCKET, QUEUES, APP_USER, Aws,
                                bootstrap_properties, env_restore, env_set, load_handler)
from stacube_testing import free_port


@pytest.fixture(scope="package")
def aws(s3_server, database):
    """Buckets, queues (each with a dead-letter queue, maxReceiveCount 3), the ingest
    notification and the database secrets on moto's server; the functions' shared environment."""
    import boto3

    saved = env_set(AWS_ENDPOINT_URL=s3_server, STACUBE_S3_ENDPOINT=s3_server)
    env = Aws(endpoint=s3_server, s3=boto3.client("s3"), sqs=boto3.client("sqs"),
              secrets=boto3.client("secretsmanager"), db_port=int(os.environ["STACUBE_DB_PORT"]))
    for bucket in (DATA_BUCKET, OUTPUT_BUCKET):
        env.s3.create_bucket(Bucket=bucket)
    for name in QUEUES:
        dlq = env.sqs.create_queue(QueueName=f"stacube-test-{name}-dlq")["QueueUrl"]
        dlq_arn = env.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        env.dlqs[name] = dlq
        env.queues[name] = env.sqs.create_queue(
            QueueName=f"stacube-test-{name}",
            Attributes={"VisibilityTimeout": "120", "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})})["QueueUrl"]
    ingest_arn = env.sqs.get_queue_attributes(QueueUrl=env.queues["ingest"],
                                              AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    env.s3.put_bucket_notification_configuration(
        Bucket=DATA_BUCKET,
        NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": ingest_arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "ingest/"}]}},
        }]},
    )
    server = {"host": "127.0.0.1", "port": env.db_port, "engine": "postgres"}
    env.admin_secret = env.secrets.create_secret(
        Name="stacube-test-admin", SecretString=json.dumps(
            {**server, "username": "postgres", "password": "admin-password", "dbname": "postgres"}))["ARN"]
    env.app_secret = env.secrets.create_secret(
        Name="stacube-test-app", SecretString=json.dumps(
            {**server, "username": APP_USER, "password": "app-password", "dbname": DATABASE}))["ARN"]
    saved.update(env_set(
        STACUBE_STAGE="test",
        STACUBE_DATABASE_SECRET_ARN=env.app_secret,
        STACUBE_DATABASE_URL=None,
        STACUBE_DB_POOL_SIZE="1",
        STACUBE_DATA_BUCKET=DATA_BUCKET,
        STACUBE_OUTPUT_BUCKET=OUTPUT_BUCKET,
        STACUBE_OUTPUT=f"s3://{OUTPUT_BUCKET}/outputs",
        STACUBE_TMP_PREFIX="tmp/",
        STACUBE_INGEST_PREFIX="ingest/",
    ))
    yield env
    env_restore(saved)


class _Capture(BaseHTTPRequestHandler):
    def do_PUT(self):  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        self.server.answers.append({"path": self.path, "headers": dict(self.headers),
                                    "body": json.loads(self.rfile.read(length) or b"null")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="package")
def cfn_responses():
    """A local stand-in for CloudFormation's pre-signed response URL; collects the PUTs."""
    server = HTTPServer(("127.0.0.1", free_port()), _Capture)
    server.answers = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/cloudformation/response?X-Amz-Signature=x"
    yield server
    server.shutdown()


@pytest.fixture(scope="package")
def bootstrapped(aws, cfn_responses):
    """The catalog database made by the db-bootstrap handler (a CloudFormation Create)."""
    from lambdas.local_events import cfn_event

    handler = load_handler("db_bootstrap")
    event = cfn_event("Create", cfn_responses.url, bootstrap_properties(aws))
    body = handler(event, None)
    assert body["Status"] == "SUCCESS", body["Reason"]
    return {"event": event, "response": cfn_responses.answers[-1]}


@pytest.fixture(scope="package")
def handlers(aws, bootstrapped):
    """The seven service handlers, imported against the bootstrapped catalog."""
    return {name: load_handler(name, aws) for name in
            ("stac_api", "raster_api", "jobs_api", "ingest", "planner", "worker", "finalize")}


@pytest.fixture(scope="package")
def app_settings(aws, bootstrapped):
    """Settings of the functions (the app role, through the app secret)."""
    from stacube.settings import Settings

    return Settings()


