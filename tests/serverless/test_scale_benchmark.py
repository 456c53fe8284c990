"""The serverless scale benchmark, shortened: two worker processes behind PgBouncer, a 25-tile job
with every fault (a worker killed mid-tile, duplicate deliveries, a stale redelivery, the finalize
message again, PostgreSQL restarted), checked for its outcome, not its timings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from stacube_testing import ROOT

pytestmark = pytest.mark.skipif(not (shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer")),
                                reason="pgbouncer is not installed (Debian package `pgbouncer`, scripts/install.sh)")


def test_a_job_survives_its_faults_through_pgbouncer(settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACUBE_", "AWS_"))}
    command = [sys.executable, str(ROOT / "benchmarks" / "serverless_scale.py"), "--workers", "2",
               "--size", "80", "--dates", "2", "--large-tile", "16", "--small-tile", "40", "--kill-at", "3", "--duplicate-every", "5",
               "--visibility", "3", "--timeout", "240", "--pg-port", str(settings.db_port),
               "--pg-data-dir", str(settings.data_dir), "--json"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["tiles"] == 25 and summary["tiles_small"] == 4
    assert summary["state"] == "completed" and summary["completions"] == 1, summary
    assert summary["duplicate_outputs"] == 0 and summary["missing_outputs"] == 0, summary["notes"]
    faults = summary["faults"]
    assert faults["killed"] == 1 and faults["replaced_workers"] >= 1
    assert faults["stale_redelivered"] == 1 and faults["duplicated"] > 0
    assert faults["database_restart_s"] is not None
    assert faults["retried_invocations"] >= 1  # the killed worker's tile, delivered again
    # one connection per worker invocation, multiplexed by PgBouncer: the database saw no more
    # sessions than PgBouncer's pool (workers + 2)
    assert 1 <= summary["peak_db_sessions"] <= summary["workers"] + 2
    assert summary["finalize_s"] is not None
