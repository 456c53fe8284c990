"""Serverless at scale, simulated here: a job of 1,024 tiles through the real handlers, with faults.

The AWS deployment's path on loopback: moto's server for S3, SQS and Secrets Manager, PgBouncer in
transaction mode in front of an embedded PostgreSQL (as RDS Proxy or PgBouncer sit in front of
RDS), the real handlers fed the event shapes AWS sends them:

    POST /jobs (jobs-api) -> plan queue -> planner -> tile queue -> N worker processes
    (scenes, composite, cogs stages) -> finalize queue -> finalize -> STAC Items

A 100-tile job runs first (no fault) and then the large one, on a generated stack (three dates
of red, near-infrared and a Landsat-style quality band, 512 x 512 px at 10 m, COGs on disk),
median NDVI on the stack's own grid cut into 32 x 32 tiles of 16 px: 1,024 tiles per stage,
small tiles so that the run measures the bookkeeping rather than the compositing. During the large
job: a worker process is killed in the middle of a tile (its message comes back when its
visibility timeout ends), some messages are delivered twice, a scenes message is delivered again
after the job moved to the composite stage, the finalize message is delivered again after the
job completed, and PostgreSQL is restarted once.

Measured (the table; ``--json``: one JSON object on the last line):

* ``overhead_per_tile_ms_100`` / ``_1000``: the state bookkeeping of a tile (the worker
  handler's time less the tile's own computation: loading, compositing, writing the Zarr region
  or the COG), the median over the tiles of each job; constant work per tile keeps their ratio
  near 1 (the mean, printed too, includes the stage moves and the database restart);
* ``peak_db_sessions``: the most PostgreSQL sessions on the job's database at once (sampled every
  50 ms), against ``workers`` (PgBouncer's pool is ``workers + 2``);
* ``duplicate_outputs`` / ``missing_outputs``: objects, job documents or items that should not
  exist / Zarr chunks, COGs, report, items or tiles that are missing (a tile computed twice by
  two deliveries at once rewrites its own chunks: counted apart, ``computed_twice``);
* ``state``: the job's end state; ``completions``: how many finalize invocations completed it.

Run: ``.venv/bin/python benchmarks/serverless_scale.py [--workers 4] [--json]`` (minutes;
it starts its own PostgreSQL, PgBouncer and moto server, on free ports, and removes them).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "src", ROOT / "services", Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

COLLECTION = "scale-stack"
ORIGIN, RES, CRS = (500000.0, 5000000.0), 10.0, "EPSG:32633"
OUTPUTS = "scale-outputs"
DATABASE, APP_USER, APP_PASSWORD = "stacube_scale", "stacube_scale_app", "scale-app-password"
QUEUES = ("plan", "tile", "finalize")
#: Seconds before a message a killed worker held is delivered again (the queues' visibility timeout).
VISIBILITY = 8


def job_spec(size: int, tile_size: int, name: str) -> dict:
    """A median NDVI job over the whole generated stack, on its own 10 m grid; ``max_cloud``
    gives it the ``scenes`` stage (every stage of the machine is exercised, and a stale scenes
    message can be delivered after the stage moved on)."""
    bbox = [ORIGIN[0] + 1, ORIGIN[1] - size * RES + 1, ORIGIN[0] + size * RES - 1, ORIGIN[1] - 1]
    return {"collections": [COLLECTION], "bbox": bbox, "bbox_crs": CRS, "datetime": "2020-01-01/2020-12-31",
            "method": "median", "indices": ["NDVI"], "max_cloud": 100, "tile_size": tile_size,
            "output_collection": name}


# -- the pieces on loopback ----------------------------------------------------------------------
from lambdas.local_events import free_port, start_moto_server  # noqa: E402


class PgBouncer:
    """PgBouncer (Debian package ``pgbouncer``) in transaction mode in front of ``db_port``."""

    def __init__(self, workdir: Path, db_port: int, pool_size: int):
        self.port = free_port()
        self.dir = workdir / "pgbouncer"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "userlist.txt").write_text(f'"{APP_USER}" "{APP_PASSWORD}"\n')
        (self.dir / "pgbouncer.ini").write_text("\n".join([
            "[databases]",
            f"{DATABASE} = host=127.0.0.1 port={db_port} dbname={DATABASE}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1", f"listen_port = {self.port}", "unix_socket_dir =",
            "auth_type = trust", f"auth_file = {self.dir / 'userlist.txt'}", f"stats_users = {APP_USER}",
            "pool_mode = transaction", f"default_pool_size = {pool_size}", f"max_db_connections = {pool_size}",
            "reserve_pool_size = 0", "max_client_conn = 500",
            "server_login_retry = 1", "query_wait_timeout = 60",
            "ignore_startup_parameters = extra_float_digits,options,search_path",
            f"logfile = {self.dir / 'pgbouncer.log'}", f"pidfile = {self.dir / 'pgbouncer.pid'}", "",
        ]))
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise SystemExit("pgbouncer is not installed (Debian package `pgbouncer`; scripts/install.sh adds it)")
        kwargs: dict = {}
        if os.geteuid() == 0:  # PgBouncer refuses to run as root, like PostgreSQL
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            for f in self.dir.iterdir():
                os.chown(f, user.pw_uid, user.pw_gid)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen([binary, str(self.dir / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd="/", **kwargs)
        import psycopg

        for _ in range(100):
            try:
                with psycopg.connect(f"postgresql://{APP_USER}@127.0.0.1:{self.port}/{DATABASE}", connect_timeout=2,
                                     prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise SystemExit(f"pgbouncer did not start: {(self.dir / 'pgbouncer.log').read_text()[-500:]}")

    def clients(self) -> int:
        """Client connections to PgBouncer (its admin console: ``SHOW CLIENTS``)."""
        import psycopg

        try:
            with psycopg.connect(f"postgresql://{APP_USER}@127.0.0.1:{self.port}/pgbouncer", autocommit=True,
                                 connect_timeout=2) as conn:
                result = conn.pgconn.exec_(b"SHOW CLIENTS")
                return max(0, result.ntuples - 1)  # less this one
        except psycopg.Error:
            return -1

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Sessions(threading.Thread):
    """Samples the PostgreSQL sessions on the job's database (and PgBouncer's clients)."""

    def __init__(self, db_port: int, bouncer: PgBouncer, interval: float = 0.05):
        super().__init__(daemon=True)
        self.dsn = f"postgresql://postgres@127.0.0.1:{db_port}/postgres"
        self.bouncer = bouncer
        self.interval = interval
        self.peak = 0
        self.peak_clients = 0
        self.stop = threading.Event()
        self.paused = threading.Event()

    def run(self) -> None:
        import psycopg

        conn = None
        tick = 0
        while not self.stop.is_set():
            if self.paused.is_set():
                if conn is not None:
                    conn.close()
                    conn = None
                time.sleep(self.interval)
                continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                 "AND backend_type = 'client backend'", (DATABASE,)).fetchone()[0]
                self.peak = max(self.peak, n)
                tick += 1
                if tick % 10 == 0:
                    self.peak_clients = max(self.peak_clients, self.bouncer.clients())
            except psycopg.Error:
                conn = None
            time.sleep(self.interval)
        if conn is not None:
            conn.close()


# -- a worker process ---------------------------------------------------------------------------------
def worker_main(config: dict) -> None:
    """A worker container: polls the tile queue, invokes the worker handler per message, times the
    tile's own computation, and injects its share of the faults."""
    import boto3

    from stacube.jobs import outputs as job_outputs
    from stacube.jobs import tasks

    computing = [0.0]

    def timed(fn, kill=None):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                if kill is not None:
                    kill()
                return fn(*args, **kwargs)
            finally:
                computing[0] += time.perf_counter() - t0
        return wrapper

    composites = [0]
    current = {"job": None}

    def faulty() -> bool:  # faults are injected into the large job only
        return bool(config.get("fault_file")) and Path(config["fault_file"]).exists()

    def maybe_die():  # the fault: killed in the middle of a tile
        if not faulty():
            return
        composites[0] += 1
        if config.get("kill_at") and composites[0] == config["kill_at"]:
            print(json.dumps({"event": "killed", "job": current["job"], "pid": os.getpid()}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    tasks.tile_stats = timed(tasks.tile_stats)
    tasks.compute_tile = timed(tasks.compute_tile, kill=maybe_die)
    tasks.outputs.write_region = timed(job_outputs.write_region)
    tasks.outputs.write_cog = timed(job_outputs.write_cog)

    from lambdas.local_events import PollResult, QueuePoller
    from lambdas.worker.handler import handler as worker_handler

    in_handler = [0.0]

    def handler(event, context):  # the function's own time (not the event source's receive/delete)
        t0 = time.perf_counter()
        try:
            return worker_handler(event, context)
        finally:
            in_handler[0] = time.perf_counter() - t0

    sqs = boto3.client("sqs")
    tile_queue = config["tile_queue"]
    poller = QueuePoller(sqs, tile_queue)
    handled = 0
    kept_scenes = None
    while True:
        messages = poller.receive()
        if not messages:
            if Path(config["stop_file"]).exists():
                return
            time.sleep(0.05)
            continue
        body = json.loads(messages[0]["Body"])
        current["job"] = body["job_id"]
        computing[0] = 0.0
        result = PollResult()
        t0 = time.perf_counter()
        poller.invoke(handler, messages, result)
        wall = time.perf_counter() - t0
        outcome = result.outcomes[0]
        handled += 1
        print(json.dumps({"event": "tile", "job": body["job_id"], "stage": body["stage"], "tile": body["tile"],
                          "ok": outcome["ok"], "attempt": outcome["attempt"], "wall": wall,
                          "handler": in_handler[0], "compute": computing[0]}), flush=True)
        if not faulty():
            continue
        # faults: duplicate deliveries, and a scenes message again once the stage moved on
        if config.get("duplicate_every") and handled % config["duplicate_every"] == 0:
            sqs.send_message(QueueUrl=tile_queue, MessageBody=messages[0]["Body"])
            print(json.dumps({"event": "duplicated", "job": body["job_id"]}), flush=True)
        if config.get("stale") and body["stage"] == "scenes" and kept_scenes is None:
            kept_scenes = messages[0]["Body"]
        if config.get("stale") and body["stage"] == "composite" and kept_scenes:
            sqs.send_message(QueueUrl=tile_queue, MessageBody=kept_scenes)
            print(json.dumps({"event": "stale-redelivered", "job": body["job_id"]}), flush=True)
            kept_scenes = ""


class Workers:
    """The worker processes: started, watched, replaced when killed; their lines collected."""

    def __init__(self, n: int, env: dict, tile_queue: str, workdir: Path):
        self.n = n
        self.env = env
        self.tile_queue = tile_queue
        self.stop_file = workdir / "stop-workers"
        self.procs: list[subprocess.Popen] = []
        self.lines: list[dict] = []
        self.lock = threading.Lock()
        self.replaced = 0
        self.faults: dict = {}

    def _start(self, index: int, faults: dict | None = None) -> subprocess.Popen:
        config = {"tile_queue": self.tile_queue, "stop_file": str(self.stop_file), **(faults or {})}
        proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(config)], env=self.env,
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        return proc

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith("{"):
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                with self.lock:
                    self.lines.append(doc)

    def start(self, faults: dict) -> None:
        """Start the pool; ``faults`` go to the first worker (kill, duplicates, stale messages),
        the duplicates to the others; they act while ``faults["fault_file"]`` exists."""
        self.stop_file.unlink(missing_ok=True)
        others = {k: faults[k] for k in ("duplicate_every", "fault_file")}
        self.procs = [self._start(i, faults if i == 0 else others) for i in range(self.n)]

    def watch(self) -> None:
        """Replace a worker that died (as Lambda starts a new container)."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None and not self.stop_file.exists():
                self.replaced += 1
                self.procs[i] = self._start(i)

    def stop(self) -> None:
        self.stop_file.write_text("stop")
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def take(self) -> list[dict]:
        with self.lock:
            lines, self.lines = self.lines, []
        return lines


# -- the run --------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="stacube-scale-"))
        os.chmod(self.workdir, 0o755)
        self.cluster = None
        self.moto = None
        self.bouncer = None

    # setup
    def start_database(self) -> int:
        from stacube.db.embedded import EmbeddedCluster
        from stacube.settings import Settings

        if self.args.pg_port:
            settings = Settings(db_port=self.args.pg_port, data_dir=Path(self.args.pg_data_dir))
        else:
            settings = Settings(db_port=free_port(), data_dir=self.workdir / "pgdata", db_name="postgres")
        self.cluster = EmbeddedCluster(settings)
        self.cluster.start()
        return settings.db_port

    def setup(self) -> dict:
        self.db_port = self.start_database()
        self.moto, endpoint = start_moto_server()
        env = {"AWS_ACCESS_KEY_ID": "scale", "AWS_SECRET_ACCESS_KEY": "scale", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "STACUBE_S3_ENDPOINT": endpoint}
        os.environ.update(env)
        for key in ("STACUBE_DATABASE_URL", "PGHOST", "STACUBE_API_KEY"):
            os.environ.pop(key, None)
        import boto3

        sqs, s3, secrets = boto3.client("sqs"), boto3.client("s3"), boto3.client("secretsmanager")
        s3.create_bucket(Bucket=OUTPUTS)
        self.queues, self.dlqs = {}, {}
        for name in QUEUES:
            dlq = sqs.create_queue(QueueName=f"scale-{name}-dlq")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self.dlqs[name] = dlq
            self.queues[name] = sqs.create_queue(QueueName=f"scale-{name}", Attributes={
                "VisibilityTimeout": str(self.args.visibility),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})})["QueueUrl"]
        server = {"host": "127.0.0.1", "port": self.db_port, "engine": "postgres"}
        tag = os.urandom(3).hex()
        admin = secrets.create_secret(Name=f"scale-admin-{tag}", SecretString=json.dumps(
            {**server, "username": "postgres", "password": "unused", "dbname": "postgres"}))["ARN"]
        app = secrets.create_secret(Name=f"scale-app-{tag}", SecretString=json.dumps(
            {**server, "username": APP_USER, "password": APP_PASSWORD, "dbname": DATABASE}))["ARN"]
        self.drop_database()
        from lambdas.db_bootstrap.handler import bootstrap

        bootstrap({"AdminSecretArn": admin, "AppSecretArn": app, "DatabaseName": DATABASE, "PgstacVersion": "0.10.0"})
        self.bouncer = PgBouncer(self.workdir, self.db_port, self.args.workers + 2)
        env.update({
            "STACUBE_STAGE": "scale", "STACUBE_DATABASE_SECRET_ARN": app, "STACUBE_DB_POOL_MODE": "transaction",
            "STACUBE_DATABASE_HOST": "127.0.0.1", "STACUBE_DATABASE_PORT": str(self.bouncer.port),
            "STACUBE_DB_POOL_SIZE": "1", "STACUBE_OUTPUT": f"s3://{OUTPUTS}/outputs", "STACUBE_TMP_PREFIX": "tmp/",
            "STACUBE_OUTPUT_BUCKET": OUTPUTS, "STACUBE_DATA_DIR": str(self.workdir / "data"),
            # the generated scenes, as a deployment names its data bucket
            "STACUBE_READ_PREFIXES": str(self.workdir / "data" / "scenes"),
            "STACUBE_PLAN_QUEUE_URL": self.queues["plan"], "STACUBE_TILE_QUEUE_URL": self.queues["tile"],
            "STACUBE_FINALIZE_QUEUE_URL": self.queues["finalize"], "STACUBE_FINALIZE_FANOUT": "2",
            "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, ROOT / "src", ROOT / "services")),
        })
        os.environ.update(env)
        from common import register_synthetic, synthetic_stack, write_cog_stack
        from stacube.catalog.pgstac import Catalog
        from stacube.settings import Settings

        self.settings = Settings()
        data, quality = synthetic_stack(self.args.dates, 2, self.args.size)
        scenes = self.workdir / "data" / "scenes"
        entries = write_cog_stack(scenes, data, quality, crs=CRS, origin=ORIGIN, resolution=RES,
                                  band_names=("B04", "B08"))
        register_synthetic(Catalog(self.settings), COLLECTION, scenes, entries, crs=CRS, bands=("B04", "B08"))
        self.env = {**os.environ}
        self.sqs, self.s3 = sqs, s3
        return env

    def drop_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.db_port}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')

    def handlers(self) -> dict:
        import importlib

        out = {}
        for name, extra in (("jobs_api", {"STACUBE_ROOT_PATH": "/jobs"}), ("planner", {}), ("finalize", {})):
            saved = {k: os.environ.get(k) for k in extra}
            os.environ.update(extra)
            try:
                out[name] = importlib.import_module(f"lambdas.{name}.handler").handler
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
        return out

    # one job
    def run_job(self, spec: dict, workers: Workers, handlers: dict, *, faults: bool) -> dict:
        from lambdas.local_events import PollResult, QueuePoller, http_event, response_json
        from stacube.errors import DatabaseUnavailable
        from stacube.jobs.state import JobStore

        store = JobStore(self.settings)
        plan_poller = QueuePoller(self.sqs, self.queues["plan"])
        final_poller = QueuePoller(self.sqs, self.queues["finalize"])
        t0 = time.perf_counter()
        posted = handlers["jobs_api"](http_event("POST", "/jobs", body=spec), None)
        if posted["statusCode"] >= 400:
            raise SystemExit(f"POST /jobs: {posted['statusCode']} {posted.get('body')}")
        job_id = response_json(posted)["id"]
        restarted = None
        finalize_started = None
        finals: list[str] = []
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            plan_poller.drain(handlers["planner"], max_invocations=5)
            got = final_poller.receive()
            if got:
                finals.append(got[0]["Body"])
                result = PollResult()
                final_poller.invoke(handlers["finalize"], got, result)
                print(f"  finalize: attempt {result.outcomes[0]['attempt']}, "
                      f"{'ok' if result.outcomes[0]['ok'] else 'failed'}", flush=True)
            try:
                job = store.get(job_id, full=False)
            except DatabaseUnavailable:  # restarting: the functions ride it out, this loop waits
                time.sleep(0.2)
                continue
            if finalize_started is None and job["stage"] in ("cogs", "finalize", "finalizing"):
                finalize_started = time.perf_counter()
            if (faults and restarted is None and job["stage"] == "composite"
                    and job["tiles_done"] >= job["tiles_total"] // 3):
                restarted = self.restart_database()
            if job["state"] != "running" and job["state"] != "queued":
                break
            workers.watch()
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        job = store.get(job_id)
        completed_at = time.perf_counter()
        if faults and finals:  # the finalize message again, after completion: nothing happens twice
            self.sqs.send_message(QueueUrl=self.queues["finalize"], MessageBody=finals[-1])
            time.sleep(0.2)
            final_poller.drain(handlers["finalize"])
        return {"job_id": job_id, "job": job, "wall": wall, "restart": restarted,
                "finalize_s": (completed_at - finalize_started) if finalize_started else None,
                "completions": self._completed.get(job_id, 0)}

    def restart_database(self) -> float:
        """Restart PostgreSQL (``pg_ctl restart -m fast``); returns how long it was down."""
        self.sessions.paused.set()
        t0 = time.perf_counter()
        self.cluster.stop()
        self.cluster.start()
        self.sessions.paused.clear()
        down = time.perf_counter() - t0
        print(f"  PostgreSQL restarted ({down:.1f} s)", flush=True)
        return down

    def check_outputs(self, result: dict) -> tuple[int, int, list[str]]:
        """(duplicate outputs, missing outputs, what they are): objects under the job's prefix
        against the ones its report and grid call for, its items against its periods, its tiles
        against the grid."""
        import math

        from stacube.catalog.pgstac import Catalog
        from stacube.jobs.state import JobStore

        job, job_id = result["job"], result["job_id"]
        notes: list[str] = []
        if job["state"] != "completed":
            return 0, 1, [f"job {job['state']}: {job['error']}"]
        report = job["report"]
        run = f"outputs/{job_id}/run-{job['run']}"
        keys = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=OUTPUTS, Prefix=f"outputs/{job_id}/"):
            keys.update(o["Key"] for o in page.get("Contents", []))
        shape, edge = report["grid"]["shape"], job["parameters"]["tile_size"]
        chunks_y, chunks_x = math.ceil(shape[0] / edge), math.ceil(shape[1] / edge)
        expected = {f"{run}/report.json", f"{run}/cube.zarr/.zmetadata"}
        for t, step in enumerate(report["steps"]):
            for v in report["variables"]:
                expected.add(f"{run}/{step['label']}/{v}.tif")
                expected.update(f"{run}/cube.zarr/{v}/{t}.{y}.{x}" for y in range(chunks_y) for x in range(chunks_x))
        metadata = {k for k in keys if k.startswith(f"{run}/cube.zarr/") and (
            k.rsplit("/", 1)[-1].startswith(".") or k.split("/")[-2] in ("x", "y", "time", "spatial_ref"))}
        lost, extra = expected - keys, keys - expected - metadata
        lost = {k for k in lost if not self._empty_chunk(run, k)}  # zarr skips chunks of fill values
        duplicates, missing = len(extra), len(lost)
        if lost:
            notes.append(f"missing: {sorted(lost)[:3]}")
        if extra:
            notes.append(f"unexpected: {sorted(extra)[:3]}")
        leftover = self.s3.list_objects_v2(Bucket=OUTPUTS, Prefix=f"tmp/{job_id}/").get("KeyCount", 0)
        if leftover:
            duplicates += leftover
            notes.append(f"{leftover} job documents left under tmp/")
        periods = len(report["steps"])
        items = Catalog(self.settings).item_counts().get(job["parameters"]["output_collection"], 0)
        if items != periods:
            notes.append(f"{items} items for {periods} periods")
            duplicates += max(0, items - periods)
            missing += max(0, periods - items)
        undone = JobStore(self.settings).run(lambda conn: conn.execute(
            "SELECT count(*) AS n FROM stacube.job_tiles WHERE job_id = %s AND state <> 'done'",
            (job_id,)).fetchone()["n"])
        if undone:
            missing += undone
            notes.append(f"{undone} tiles not done")
        return duplicates, missing, notes

    def _empty_chunk(self, run: str, key: str) -> bool:
        """Whether an absent chunk ``<run>/cube.zarr/<var>/<t>.<y>.<x>`` is absent because its
        region holds the fill value only (zarr does not write such chunks)."""
        import numpy as np
        import zarr

        from stacube.storage.objects import zarr_store_at

        parts = key.split("/")
        if len(parts) < 3 or parts[-3] != "cube.zarr":
            return False
        var, index = parts[-2], [int(i) for i in parts[-1].split(".")]
        array = zarr.open_group(store=zarr_store_at(f"s3://{OUTPUTS}/{run}/cube.zarr", self.settings, read_only=True),
                                mode="r", zarr_format=2)[var]
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, array.chunks))
        values, fill = array[region], array.fill_value
        if fill is None or (np.asarray(fill).dtype.kind == "f" and np.isnan(fill)):
            return bool(np.all(np.isnan(values)))
        return bool(np.all(values == fill))

    def main(self) -> dict:
        from stacube.jobs.state import JobStore  # noqa: F401 - fail early if the package is broken

        print("setting up: PostgreSQL, moto, db-bootstrap, PgBouncer, the sample catalog", flush=True)
        setup_t = time.perf_counter()
        self.setup()
        handlers = self.handlers()
        # count the completions: finalize's step, as the finalize handler calls it
        from stacube.jobs import queue

        self._completed: Counter = Counter()
        step = queue.finalize_job

        def counted(settings, message, **kwargs):
            outcome = step(settings, message, **kwargs)
            if outcome.startswith("completed"):
                self._completed[message.job_id] += 1
            return outcome

        queue.finalize_job = counted
        print(f"  ready in {time.perf_counter() - setup_t:.1f} s", flush=True)
        self.sessions = Sessions(self.db_port, self.bouncer)
        self.sessions.start()
        workers = Workers(self.args.workers, self.env, self.queues["tile"], self.workdir)
        fault_file = self.workdir / "faults-on"
        workers.start({"kill_at": self.args.kill_at, "duplicate_every": self.args.duplicate_every, "stale": True,
                       "fault_file": str(fault_file)})
        results = {}
        try:
            for label, tile_size, faults in (("small", self.args.small_tile, False),
                                             ("large", self.args.large_tile, True)):
                spec = job_spec(self.args.size, tile_size, f"scale-{label}-{tile_size}")
                print(f"{label} job: tiles of {tile_size} px{' with faults' if faults else ''}", flush=True)
                if faults:
                    fault_file.write_text("on")
                results[label] = self.run_job(spec, workers, handlers, faults=faults)
        finally:
            workers.stop()
            lines = workers.take()
            for result in results.values():
                result["lines"] = [d for d in lines if d.get("job") == result["job_id"]]
            self.sessions.stop.set()
            queue.finalize_job = step
        return self.summarise(results, workers)

    def summarise(self, results: dict, workers: Workers) -> dict:
        rows = {}
        for label, result in results.items():
            tiles = [d for d in result["lines"] if d.get("event") == "tile" and d["ok"] and d["compute"] > 0]
            overhead = [1000 * (d["handler"] - d["compute"]) for d in tiles]
            per_stage = {stage: statistics.median(1000 * d["compute"] for d in tiles if d["stage"] == stage)
                         for stage in ("scenes", "composite", "cogs") if any(d["stage"] == stage for d in tiles)}
            twice = sum(n - 1 for n in Counter((d["stage"], d["tile"]) for d in tiles).values() if n > 1)
            duplicates, missing, notes = self.check_outputs(result)
            rows[label] = {
                "tiles": result["job"]["report"]["grid"]["tiles"] if result["job"]["report"] else None,
                "state": result["job"]["state"], "wall_s": result["wall"],
                "overhead_median_ms": statistics.median(overhead) if overhead else float("nan"),
                "overhead_mean_ms": statistics.fmean(overhead) if overhead else float("nan"),
                "compute_median_ms": statistics.median(1000 * d["compute"] for d in tiles) if tiles else float("nan"),
                "compute_scenes_ms": per_stage.get("scenes"), "compute_composite_ms": per_stage.get("composite"),
                "invocations": len([d for d in result["lines"] if d.get("event") == "tile"]),
                "duplicated": sum(1 for d in result["lines"] if d.get("event") == "duplicated"),
                "stale": sum(1 for d in result["lines"] if d.get("event") == "stale-redelivered"),
                "killed": sum(1 for d in result["lines"] if d.get("event") == "killed"),
                "retried": sum(1 for d in result["lines"] if d.get("event") == "tile" and d["attempt"] > 1),
                "failed_invocations": sum(1 for d in result["lines"] if d.get("event") == "tile" and not d["ok"]),
                "duplicate_outputs": duplicates, "missing_outputs": missing, "notes": notes,
                "computed_twice": twice,
                "finalize_s": result["finalize_s"], "restart_s": result["restart"],
                "completions": result["completions"], "error": result["job"]["error"],
            }
        small, large = rows["small"], rows["large"]
        summary = {
            "tiles": large["tiles"], "workers": self.args.workers, "state": large["state"],
            "completions": large["completions"], "wall_s": round(large["wall_s"], 2),
            "overhead_per_tile_ms_100": round(small["overhead_median_ms"], 2),
            "overhead_per_tile_ms_1000": round(large["overhead_median_ms"], 2),
            "overhead_ratio": round(large["overhead_median_ms"] / small["overhead_median_ms"], 3),
            "overhead_mean_ms_100": round(small["overhead_mean_ms"], 2),
            "overhead_mean_ms_1000": round(large["overhead_mean_ms"], 2),
            "tiles_small": small["tiles"],
            "peak_db_sessions": self.sessions.peak, "peak_pooler_clients": self.sessions.peak_clients,
            "finalize_s": round(large["finalize_s"], 2) if large["finalize_s"] else None,
            "duplicate_outputs": large["duplicate_outputs"] + small["duplicate_outputs"],
            "missing_outputs": large["missing_outputs"] + small["missing_outputs"],
            "faults": {"killed": large["killed"], "replaced_workers": workers.replaced,
                       "duplicated": large["duplicated"], "stale_redelivered": large["stale"],
                       "database_restart_s": round(large["restart_s"], 2) if large["restart_s"] else None,
                       "retried_invocations": large["retried"], "failed_invocations": large["failed_invocations"],
                       "computed_twice": large["computed_twice"]},
            "notes": small["notes"] + large["notes"],
        }
        print()
        print(f"{'':<34}{'small job':>14}{'large job':>14}")
        for key, fmt in (("tiles", "{}"), ("state", "{}"), ("wall_s", "{:.1f} s"), ("invocations", "{}"),
                         ("compute_scenes_ms", "{:.1f} ms"), ("compute_composite_ms", "{:.1f} ms"),
                         ("overhead_median_ms", "{:.2f} ms"),
                         ("overhead_mean_ms", "{:.2f} ms"), ("retried", "{}"), ("finalize_s", "{:.1f} s"),
                         ("duplicate_outputs", "{}"), ("missing_outputs", "{}"), ("completions", "{}")):
            cells = [(fmt.format(r[key]) if r[key] is not None else "-") for r in (small, large)]
            print(f"{key:<34}{cells[0]:>14}{cells[1]:>14}")
        print(f"bookkeeping per tile, large / small (medians): {summary['overhead_ratio']:.2f} (target <= 1.2)")
        print(f"peak PostgreSQL sessions: {summary['peak_db_sessions']} ({self.args.workers} workers; PgBouncer pool "
              f"{self.args.workers + 2}); peak PgBouncer clients: {summary['peak_pooler_clients']}")
        print(f"faults: {json.dumps(summary['faults'])}")
        for note in summary["notes"]:
            print(f"note: {note}")
        return summary

    def close(self) -> None:
        if self.bouncer is not None:
            self.bouncer.stop()
        if self.moto is not None:
            self.moto.terminate()
            self.moto.wait(timeout=10)
        if self.cluster is not None:
            try:
                if self.args.pg_port:
                    self.cluster.start()  # leave a shared cluster running
                    self.drop_database()
                else:
                    self.cluster.stop()
            except Exception:  # noqa: BLE001 - cleaning up
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4, help="worker processes (Lambda containers)")
    parser.add_argument("--size", type=int, default=512, help="edge of the generated stack (px, 10 m)")
    parser.add_argument("--dates", type=int, default=3, help="dates of the generated stack")
    parser.add_argument("--large-tile", type=int, default=16, help="tile edge of the large job (px): 32 x 32 tiles")
    parser.add_argument("--small-tile", type=int, default=52, help="tile edge of the small job (px): 10 x 10 tiles")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a job may take")
    parser.add_argument("--visibility", type=int, default=VISIBILITY,
                        help="the queues' visibility timeout (s): when a killed worker's message comes back")
    parser.add_argument("--kill-at", type=int, default=40,
                        help="the first worker is killed during its n-th composite tile")
    parser.add_argument("--duplicate-every", type=int, default=97,
                        help="each worker delivers every n-th message it handled again")
    parser.add_argument("--pg-port", type=int, help="use the running embedded cluster on this port")
    parser.add_argument("--pg-data-dir", help="its data directory (with --pg-port)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(json.loads(args.worker))
        return
    bench = Bench(args)
    try:
        summary = bench.main()
    finally:
        bench.close()
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
