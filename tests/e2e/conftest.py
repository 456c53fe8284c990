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

import pytest

from console_helpers import CHROMIUM, CHROMIUM_ARGS, E2E_DATABASE, console_page, sample_catalog, serving
from stacube_testing import ROOT, process_site

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
    """The sample products and stacks in the e2e database (a copy of the session's sample catalog)."""
    return sample_catalog(E2E_DATABASE)


@pytest.fixture(scope="session")
def server(e2e_catalog, console_bundle, tmp_path_factory):
    """Base URL of the application `stacube up` serves, on the sample catalog, with the registered
    process ``e2e-band-mean`` on its path (and its job processes')."""
    site = process_site(tmp_path_factory.mktemp("e2e-site"), {"stacube_e2e_band_mean.py": BAND_MEAN},
                        {"e2e-band-mean": "stacube_e2e_band_mean"}, distribution="stacube-e2e-processes")
    path = os.pathsep.join([str(site), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])])
    with serving(E2E_DATABASE, tmp_path_factory.mktemp("e2e-server"), {"PYTHONPATH": path}) as base:
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
