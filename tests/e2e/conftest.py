"""End-to-end fixtures: the console bundle, a real server on the sample catalog, a headless browser.

The server is what ``stacube up`` runs (``stacube_services.app:create_app`` under uvicorn) on a
free port, over the sample products and stacks registered in a database of its own in the
session's PostgreSQL cluster (so the collections and jobs these tests create stay out of the
other tests' catalog), with its own output directory. The browser is Debian's ``chromium``
driven by Playwright (no browser download); WebGL (MapLibre) runs on SwiftShader.
"""

from __future__ import annotations

import subprocess

import pytest

from console_helpers import CHROMIUM, CHROMIUM_ARGS, console_page, sample_catalog, serving
from stacube_testing import ROOT

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
    return sample_catalog(E2E_DATABASE)


@pytest.fixture(scope="session")
def server(e2e_catalog, console_bundle, tmp_path_factory):
    """Base URL of the application `stacube up` serves, on the sample catalog."""
    with serving(E2E_DATABASE, tmp_path_factory.mktemp("e2e-server")) as base:
        yield base


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
    with console_page(browser, server, artifacts_dir, request) as pg:
        yield pg


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep
