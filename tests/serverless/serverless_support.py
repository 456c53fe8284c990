"""Helpers of the serverless tests: names, the functions' environments, loading handlers."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from stacube_testing import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_BUCKET = "stacube-test-data"
OUTPUT_BUCKET = "stacube-test-outputs"
DATABASE = "stacube_aws"
APP_USER = "stacube_app_test"
QUEUES = ("ingest", "plan", "tile", "finalize")


@dataclass
class Aws:
    """Endpoints, clients and names of the local AWS stand-in."""

    endpoint: str
    s3: object
    sqs: object
    secrets: object
    queues: dict[str, str] = field(default_factory=dict)
    dlqs: dict[str, str] = field(default_factory=dict)
    admin_secret: str = ""
    app_secret: str = ""
    db_port: int = 0


def env_set(**values):
    """Set (or, with None, unset) environment variables; returns what to restore."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = str(value)
    return saved


def env_restore(saved):
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def bootstrap_properties(aws: Aws, **overrides) -> dict:
    return {"AdminSecretArn": aws.admin_secret, "AppSecretArn": aws.app_secret,
            "DatabaseName": DATABASE, "PgstacVersion": "0.10.0", **overrides}


#: Environment of each function beyond the shared one (as infra/stacube_infra/stack.py sets it).
FUNCTION_ENV = {
    "stac_api": lambda aws: {"STACUBE_ROOT_PATH": "/stac"},
    "raster_api": lambda aws: {"STACUBE_ROOT_PATH": "/raster", "STACUBE_TILE_STORE": f"s3://{OUTPUT_BUCKET}/tiles"},
    "jobs_api": lambda aws: {"STACUBE_ROOT_PATH": "/jobs", "STACUBE_PLAN_QUEUE_URL": aws.queues["plan"]},
    "planner": lambda aws: {"STACUBE_TILE_QUEUE_URL": aws.queues["tile"]},
    "worker": lambda aws: {"STACUBE_FINALIZE_QUEUE_URL": aws.queues["finalize"]},
    "reaper": lambda aws: {"STACUBE_PLAN_QUEUE_URL": aws.queues["plan"], "STACUBE_TILE_QUEUE_URL": aws.queues["tile"],
                           "STACUBE_FINALIZE_QUEUE_URL": aws.queues["finalize"]},
}


def load_handler(name: str, aws: Aws | None = None):
    """``lambdas.<name>.handler.handler``, its module imported (once, like a container's init)
    with the function's own environment."""
    extra = FUNCTION_ENV.get(name, lambda aws: {})(aws) if aws else {}
    keys = ("STACUBE_ROOT_PATH", "STACUBE_PLAN_QUEUE_URL", "STACUBE_TILE_QUEUE_URL",
            "STACUBE_FINALIZE_QUEUE_URL", "STACUBE_TILE_STORE")
    saved = env_set(**{k: extra.get(k) for k in keys})
    try:
        module = importlib.import_module(f"lambdas.{name}.handler")
    finally:
        env_restore(saved)
    return module.handler


def poller(aws: Aws, queue: str, batch_size: int = 1):
    from lambdas.local_events import QueuePoller

    return QueuePoller(aws.sqs, aws.queues[queue], batch_size=batch_size)


def sample_dir(name: str) -> Path:
    return ROOT / "data" / "samples" / name
