"""The demo: the sample stacks in a catalog, three composites, the APIs, and URLs that work.

Run by `make demo` after the install. Every step is a `stacube` command, printed before it runs,
so it doubles as a walk-through.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACUBE = str(ROOT / ".venv" / "bin" / "stacube")
STATE = ROOT / ".stacube"


def run(*args: str, capture: bool = False) -> str:
    print(f"\n$ stacube {' '.join(shlex.quote(a) for a in args)}", flush=True)
    proc = subprocess.run([STACUBE, *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if proc.returncode != 0:
        sys.exit(f"demo stopped: `stacube {args[0]}` failed (exit {proc.returncode})")
    return proc.stdout or ""


def tile_of(bbox: list[float], max_zoom: int = 18) -> tuple[int, int, int]:
    """The WebMercatorQuad tile at the centre of a lon/lat bbox, at a zoom that shows it whole."""
    lon = (bbox[0] + bbox[2]) / 2
    lat = (bbox[1] + bbox[3]) / 2
    span = max(bbox[2] - bbox[0], 1e-9)
    z = max(0, min(max_zoom, int(math.floor(math.log2(360.0 / span)))))
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return z, x, y


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_server(port: int) -> None:
    pidfile = STATE / "up.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 15)
            time.sleep(1)
        except (ProcessLookupError, ValueError):
            pass
    log = open(STATE / "up.log", "w")
    print(f"\n$ stacube up --port {port}   (in the background; log in .stacube/up.log)")
    proc = subprocess.Popen([STACUBE, "up", "--port", str(port)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    for _ in range(120):
        try:
            if fetch(f"http://127.0.0.1:{port}/stac/")[0] == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit("demo stopped: the server exited; see .stacube/up.log")
        time.sleep(0.5)
    sys.exit("demo stopped: the server did not answer within 60 s; see .stacube/up.log")


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    os.environ["STACUBE_PORT"] = str(port)
    run("db", "start")
    run("product", "add", *sorted(str(p) for p in (ROOT / "data" / "products").iterdir()))
    run("dataset", "add", *sorted(str(p) for p in (ROOT / "data" / "samples").iterdir()))
    run("product", "list")

    jobs = {
        "Landsat 8 New York, best-pixel, max 20% cloud, 3 path/rows": [
            "--collection", "landsat-8-c1-l1tp-gdalcubes-sample",
            "--bbox=-76.2,39.3,-71.95,42.8", "--datetime", "2018-01-01/2018-12-31",
            "--method", "best-pixel", "--max-cloud", "20", "--bands", "red,green,blue,nir",
            "--index", "NDVI"],
        "Sentinel-2 L1C Slovenia, median NDVI": [
            "--collection", "sentinel-2-l1c-eolearn-sample",
            "--bbox", "14.5514,45.8659,14.5642,45.8750", "--datetime", "2015-07-01/2015-09-30",
            "--method", "median", "--bands", "red,green,blue", "--index", "NDVI"],
        "WorldCereal Sentinel-2 + Landsat 8, cross-collection median per quarter": [
            "--collection", "sentinel-2-l2a-worldcereal-sample",
            "--collection", "landsat-8-l2-worldcereal-sample",
            "--bbox=34.45289,-3.17635,34.45341,-3.17582", "--datetime", "2018-10-01/2019-09-30",
            "--method", "median", "--period", "P3M", "--bands", "red,green,blue,nir",
            "--index", "NDVI"],
    }
    reports = {}
    for title, args in jobs.items():
        print(f"\n# {title}")
        out = run("composite", *args, "--json", capture=True)
        report = json.loads(out)
        reports[title] = report
        used = sum(s["used"] for s in report["scenes"])
        print(f"  job {report['job_id']}: {used}/{len(report['scenes'])} scenes used, "
              f"{len(report['steps'])} period(s), {report['elapsed_seconds']:.2f} s, "
              f"registered {', '.join(report['items'])} in {report['collection']}")

    start_server(port)
    base = f"http://127.0.0.1:{port}"
    urls: list[tuple[str, str]] = [
        ("STAC API", f"{base}/stac/"),
        ("STAC search (Landsat 8, 2018, cloud < 10%)",
         f"{base}/stac/search?collections=landsat-8-c1-l1tp-gdalcubes-sample&datetime=2018-01-01T00:00:00Z/2018-12-31T23:59:59Z"
         "&filter=eo:cloud_cover%3C10&filter-lang=cql2-text&limit=5"),
    ]
    for title, report in reports.items():
        item = report["items"][0]
        bbox = report["parameters"]["bbox"]
        z, x, y = tile_of(bbox)
        rgb = "assets=red&assets=green&assets=blue&rescale=0,0.3"
        urls.append((f"tile of {title}",
                     f"{base}/raster/collections/{report['collection']}/items/{item}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{rgb}"))
        urls.append((f"NDVI tile of {title}",
                     f"{base}/raster/collections/{report['collection']}/items/{item}/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
                     "?assets=NDVI&rescale=-0.2,0.9&colormap_name=rdylgn"))
        rel = Path(report["outputs"]["report"]).relative_to(STATE / "data")
        urls.append((f"report of {title}", f"{base}/files/{rel}"))
    z, x, y = tile_of([14.5514, 45.8659, 14.5642, 45.8750], max_zoom=15)
    urls.append(("NDVI tile of the source collection sentinel-2-l1c-eolearn-sample",
                 f"{base}/raster/collections/sentinel-2-l1c-eolearn-sample/tiles/WebMercatorQuad/{z}/{x}/{y}.png?index=NDVI"))
    urls.append(("map viewer of the Slovenia source collection (true colour)",
                 f"{base}/raster/collections/sentinel-2-l1c-eolearn-sample/WebMercatorQuad/map.html?assets=B04&assets=B03&assets=B02&rescale=0,3000"))

    print("\nstacube is running. Working URLs (each checked just now):")
    failed = 0
    for title, url in urls:
        status, body = fetch(url)
        ok = status == 200 and len(body) > 0
        failed += not ok
        print(f"  [{'ok' if ok else status}] {title}\n        {url}")
    print(f"\nStop with `make stop`. Reports are also in {STATE / 'data'}/<job>/report.json.")
    if failed:
        sys.exit(f"{failed} URL(s) did not answer 200")


if __name__ == "__main__":
    main()
