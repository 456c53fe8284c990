"""Helpers of the console's browser tests: the catalog and server, the browser, HTTP, tile pixels."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from stacube_testing import ROOT, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1400, "height": 900}
#: the database of the console's tests (a copy of the session's sample catalog)
E2E_DATABASE = "stacube_e2e"


def http_get(url: str, timeout: float = 30) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def painted_pixels(png: bytes):
    """(number of non-transparent pixels, their RGB standard deviation) of a PNG tile."""
    import numpy as np
    from PIL import Image

    px = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(float)
    painted = px[..., 3] > 0
    if not painted.any():
        return 0, 0.0
    return int(painted.sum()), float(px[painted][:, :3].std())


def finished_job(page, timeout_ms: int = 240_000) -> str:
    """The id of the job a form opened the page of, once it finished (completed, else fail)."""
    from playwright.sync_api import expect

    page.wait_for_url(re.compile(r"#/tasks/"), timeout=30_000)
    job_id = page.url.split("#/tasks/")[1]
    state = page.locator("#task-status [data-state]")
    expect(state).to_have_attribute("data-state", re.compile("completed|failed|cancelled"), timeout=timeout_ms)
    assert state.get_attribute("data-state") == "completed", page.locator("main .error").all_inner_texts()
    return job_id
def sample_catalog(db_name: str):
    """The sample products and stacks in database ``db_name`` (a fresh copy of the session's
    sample catalog template, :func:`live_server.sample_database`)."""
    from stacube.catalog.pgstac import Catalog

    sys.path.insert(0, str(ROOT / "tests" / "conformance"))
    from live_server import sample_database

    return Catalog(sample_database(db_name))


@contextmanager
def serving(db_name: str, folder, env: dict | None = None):
    """Base URL of the application `stacube up` serves (uvicorn on a free port) over database
    ``db_name``, with outputs in ``folder`` and ``env`` added to the environment; stopped after."""
    port = free_port()
    log_path = folder / "server.log"
    env = {**os.environ, "STACUBE_DB_NAME": db_name, "STACUBE_OUTPUT": (folder / "outputs").as_uri(),
           "STACUBE_WORKERS": "1", "STACUBE_HOST": "127.0.0.1", "STACUBE_PORT": str(port), **(env or {})}
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
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def console_page(browser, base: str, artifacts_dir, request, *, viewport: dict | None = None, name: str = ""):
    """A page in a context of its own (its own sessionStorage and cache) on ``base``; JavaScript
    errors fail the test; a screenshot is saved if the test fails."""
    context = browser.new_context(viewport=viewport or VIEWPORT, base_url=base)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            pg.screenshot(path=str(artifacts_dir / f"console-failed-{request.node.name}{name}.png"))
    finally:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


class Tiles:
    """Tile responses of the page whose URL contains ``part`` (and passes ``where``)."""

    def __init__(self, page, part: str):
        self.page = page
        self.part = part
        self.responses = []
        page.on("response", self._record)

    def _record(self, response):
        if self.part in response.url and "/tiles/WebMercatorQuad/" in response.url:
            self.responses.append(response)

    def painted(self, where=lambda url: True, timeout: float = 45, min_pixels: int = 200):
        """Wait for a 200 PNG tile with painted, non-uniform pixels; returns (url, pixels, std)."""
        deadline = time.monotonic() + timeout
        seen = set()
        while time.monotonic() < deadline:
            for r in list(self.responses):
                if r.url in seen or not where(r.url):
                    continue
                seen.add(r.url)
                if r.status != 200:
                    continue
                try:
                    body = r.body()
                except Exception:  # evicted from the page: fetch it again
                    body = http_get(r.url)[1]
                n, std = painted_pixels(body)
                if n >= min_pixels and std > 1.0:
                    return r.url, n, std
            self.page.wait_for_timeout(200)
        statuses = [(r.status, r.url[-120:]) for r in self.responses if where(r.url)]
        raise AssertionError(f"no painted tile matching {self.part!r} in {timeout}s; got {statuses[:8]}")
