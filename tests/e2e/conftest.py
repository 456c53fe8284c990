"""End-to-end fixtures: the console bundle, a real server on the sample catalog, a headless browser.

The server is what ``stacube up`` runs (``stacube_services.app:create_app`` under uvicorn) on a
free port, over the sample products and stacks registered in a database of its own in the
session's PostgreSQL cluster (so the collections and jobs these tests create stay out of the
other tests' catalog), with its own output directory. The browser is Debian's ``chromium``
driven by Playwright (no browser download); WebGL (MapLibre) runs on SwiftShader.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from console_helpers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, http_get
from stacube_testing import PRODUCTS, ROOT, SAMPLES, free_port, process_site

E2E_DATABASE = "stacube_e2e"

#: A registered process of the console's tests (``e2e-band-mean``): its parameters use every
#: kind of field the process form generates (enum, number, integer, boolean, string, list of
#: strings; one required).
BAND_MEAN = '''
"""Scaled mean of the clear values of a band over the period."""
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field


class Parameters(BaseModel):
    band: Literal["red", "nir"] = Field("nir", description="The band averaged.")
    offset: float = Field(description="Added to the mean.")
    scale: float = Field(1.0, gt=0, le=100, description="Multiplies the mean.")
    min_count: int = Field(1, ge=1, le=50, description="Fewest clear observations of a pixel.")
    invert: bool = Field(False, description="Negate the result.")
    label: str = Field("mean", description="A free label (kept in the job's parameters).")
    tags: list[str] = Field(default_factory=list, description="Free tags.")


OUTPUTS = {"band_mean": {"dtype": "float32"}}


def execute(cube, band="nir", offset=0.0, scale=1.0, min_count=1, invert=False, label="mean", tags=()):
    data = cube[band]
    count = np.isfinite(data).sum("time")
    mean = (data.mean("time") * scale + offset) * (-1 if invert else 1)
    return {"band_mean": mean.where(count >= min_count).values.astype("float32")}
'''


@pytest.fixture(scope="session")
def console_bundle():
    """The built console, rebuilt first when a source is newer than the bundle."""
    script = ROOT / "scripts" / "build-console.sh"
    proc = subprocess.run([str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"building the console failed:\n{proc.stderr[-3000:]}")
    index = ROOT / "services" / "stacube_services" / "console_dist" / "index.html"
    if not index.is_file():
        pytest.fail(f"the console is not built ({index} missing): {proc.stderr.strip()}")
    return index.parent


@pytest.fixture(scope="session")
def e2e_catalog(database):
    """The sample products and stacks in the e2e database (created and migrated here)."""
    from stacube.catalog.register import add_datasets, add_product
    from stacube.catalog.pgstac import Catalog
    from stacube.db.migrate import migrate
    from stacube.db.embedded import EmbeddedCluster
    from stacube.settings import Settings

    settings = Settings(db_name=E2E_DATABASE)
    EmbeddedCluster(settings).ensure_database()
    migrate(settings)
    catalog = Catalog(settings)
    for path in sorted(PRODUCTS.iterdir()):
        add_product(catalog, path)
    add_datasets(catalog, sorted(SAMPLES.iterdir()))
    return catalog


@pytest.fixture(scope="session")
def server(e2e_catalog, console_bundle, tmp_path_factory):
    """Base URL of the application `stacube up` serves, on the sample catalog, with the registered
    process ``e2e-band-mean`` on its path (and its job processes')."""
    port = free_port()
    folder = tmp_path_factory.mktemp("e2e-server")
    log_path = folder / "server.log"
    site = process_site(tmp_path_factory.mktemp("e2e-site"), {"stacube_e2e_band_mean.py": BAND_MEAN},
                        {"e2e-band-mean": "stacube_e2e_band_mean"}, distribution="stacube-e2e-processes")
    path = os.pathsep.join([str(site), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])])
    env = {**os.environ, "STACUBE_DB_NAME": E2E_DATABASE, "STACUBE_OUTPUT": (folder / "outputs").as_uri(),
           "STACUBE_WORKERS": "1", "STACUBE_HOST": "127.0.0.1", "STACUBE_PORT": str(port), "PYTHONPATH": path}
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "stacube_services.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if http_get(f"{base}/api", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    """Chromium, for one module: Playwright's sync API owns an event loop in this thread while it
    runs, so it must stop before other tests (Mangum, asyncio clients) run theirs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, artifacts_dir, request):
    """A fresh page; JavaScript errors fail the test; a screenshot is saved if it fails."""
    context = browser.new_context(viewport=VIEWPORT, base_url=server)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        pg.screenshot(path=str(artifacts_dir / f"console-failed-{request.node.name}.png"))
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep
