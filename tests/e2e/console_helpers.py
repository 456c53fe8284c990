"""Helpers of the console's browser tests: the browser, HTTP, tile pixels."""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]
VIEWPORT = {"width": 1400, "height": 900}


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
