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
from stacube_testing import ROOT, free_port

E2E_DATABASE = "stacube_e2e"


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
    """The sample products and stacks in the e2e database (a copy of the session's sample catalog)."""
    from stacube.catalog.pgstac import Catalog

    sys.path.insert(0, str(ROOT / "tests" / "conformance"))
    from live_server import sample_database

    return Catalog(sample_database(E2E_DATABASE))


@pytest.fixture(scope="session")
def server(e2e_catalog, console_bundle, tmp_path_factory):
    """Base URL of the application `stacube up` serves, on the sample catalog."""
    port = free_port()
    folder = tmp_path_factory.mktemp("e2e-server")
    log_path = folder / "server.log"
    env = {**os.environ, "STACUBE_DB_NAME": E2E_DATABASE, "STACUBE_OUTPUT": (folder / "outputs").as_uri(),
           "STACUBE_WORKERS": "1", "STACUBE_HOST": "127.0.0.1", "STACUBE_PORT": str(port)}
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
