"""A real ``stacube up`` application on a free loopback port, over a catalog database of its own.

Shared by the conformance and the fault tests: ``sample_database`` creates a database in the
session's PostgreSQL cluster with the sample products and stacks (so what the tools create,
change or delete stays out of the other tests' catalog); ``LiveServer`` runs uvicorn on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stacube_testing import ROOT, free_port, register_samples

API_KEY = "conformance-key"  # STACUBE_API_KEY of the servers the conformance tools talk to
TRANSACTION_COLLECTION = "conformance-transactions"


#: the sample catalog, migrated and registered once per session; ``sample_database`` copies it
TEMPLATE = "stacube_sample_template"


def sample_database(name: str):
    """Settings of a fresh database ``name`` holding the sample catalog (dropped first if it exists).

    The first call of a session migrates a template database and registers the samples in it;
    every call copies the template (``CREATE DATABASE ... TEMPLATE``, a file copy in the cluster),
    so each database is as ``stacube db migrate`` and the registration leave it, in under a second.
    """
    import psycopg

    from stacube.settings import Settings

    base = Settings()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{base.db_port}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,)).fetchone() is None:
            _build_template(conn)
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    return Settings(db_name=name)


def _build_template(conn) -> None:
    """Migrate a database, register the samples in it, then name it ``TEMPLATE`` (only once done,
    so a failed build leaves no half-filled template); no session stays connected to it."""
    from stacube.catalog.pgstac import Catalog
    from stacube.db.migrate import migrate
    from stacube.settings import Settings

    building = TEMPLATE + "_building"
    conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
    conn.execute(f'CREATE DATABASE "{building}"')
    settings = Settings(db_name=building)
    migrate(settings)
    catalog = Catalog(settings)
    register_samples(catalog)
    # connections kept open by this process (per-thread reuse) would block copying the template
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (building,))
    conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{TEMPLATE}"')


def drop_database(name: str) -> None:
    import psycopg

    from stacube.settings import Settings

    port = Settings().db_port
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class LiveServer:
    """``stacube_services.app:create_app`` under uvicorn, as ``stacube up`` runs it.

    Args:
        env: variables added to the test environment (``STACUBE_DB_NAME``, ``STACUBE_API_KEY``...).
        log: file receiving the server's output.
        workers: uvicorn worker processes.
    """

    def __init__(self, env: dict[str, str], log: Path, *, workers: int = 1):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.env = {**os.environ, "STACUBE_HOST": "127.0.0.1", "STACUBE_PORT": str(self.port),
                    "STACUBE_WORKERS": "1", **env}
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> "LiveServer":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "stacube_services.app:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
             "--workers", str(self.workers)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/stac/", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
