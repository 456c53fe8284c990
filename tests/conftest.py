"""Test session: a real PostgreSQL + PostGIS + pgSTAC cluster started for the session.

The cluster lives in a temporary data directory on a free port; ``STACUBE_*`` variables point
every Settings object (and every ``stacube`` subprocess) at it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacube_testing import ROOT, free_port, register_samples, run_cli

#: ``make test`` runs the suite on two pytest-xdist workers (``-n 2``), each with a cluster of its
#: own. Each worker takes one of these halves and runs its packages whole, in collection order, as
#: a serial run would (package fixtures set and restore the environment; later tests may meet what
#: earlier ones of their half left in the catalog, never what the other half did).
WORKER_GROUPS = {
    "first": ("access", "attack", "cubes", "e2e", "faults"),
    "second": ("conformance", "infra", "integration", "interop", "methods", "processes", "serverless", "structure", "unit"),
}
_GROUP_OF = {package: group for group, packages in WORKER_GROUPS.items() for package in packages}


def pytest_xdist_make_scheduler(config, log):
    """With ``-n``: xdist's scope scheduling, one scope per half of :data:`WORKER_GROUPS`."""
    from xdist.scheduler import LoadScopeScheduling

    class PackageHalves(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            parts = nodeid.split("::")[0].split("/")
            return _GROUP_OF.get(parts[1] if len(parts) > 2 and parts[0] == "tests" else "", "second")

    return PackageHalves(config, log)


@pytest.fixture(scope="session")
def stacube_env():
    """Environment of the test session (data directory, database port).

    The data directory is a private temporary directory (not pytest's rotating base temp, which
    other pytest runs on the same machine may clean up under a running cluster).
    """
    import shutil
    import tempfile

    data_dir = Path(tempfile.mkdtemp(prefix="stacube-test-"))
    os.chmod(data_dir, 0o755)  # the embedded cluster's service user must reach it
    env = {
        "STACUBE_DATA_DIR": str(data_dir),
        "STACUBE_DB_PORT": str(free_port()),
        "STACUBE_DB_NAME": "stacube_test",
    }
    for key in ("STACUBE_DATABASE_URL", "STACUBE_DATABASE_SECRET_ARN", "PGHOST", "STACUBE_API_KEY",
                "STACUBE_OUTPUT"):
        os.environ.pop(key, None)
    os.environ.update(env)
    yield env
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database(stacube_env):
    """The embedded catalog, started and migrated once per session; stopped at the end."""
    from stacube.db.migrate import migrate
    from stacube.db.embedded import EmbeddedCluster
    from stacube.settings import Settings

    settings = Settings()
    cluster = EmbeddedCluster(settings)
    cluster.start()
    migrate(settings)
    yield settings
    cluster.stop()


@pytest.fixture(scope="session")
def settings(database):
    from stacube.settings import Settings

    return Settings()


@pytest.fixture(scope="session")
def catalog(settings):
    from stacube.catalog.pgstac import Catalog

    return Catalog(settings)


@pytest.fixture(scope="session")
def samples(catalog):
    """The sample products and stacks, registered once."""
    register_samples(catalog)
    return catalog


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def artifacts_dir():
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def s3_server():
    """An S3-compatible server on loopback (moto in server mode); yields its endpoint URL."""
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
