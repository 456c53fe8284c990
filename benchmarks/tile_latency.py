"""Tile latency of the raster API: a composite tile and an NDVI tile against a plain
titiler-pgstac RGB mosaic tile of the same collection, through a running ``stacube up`` server.

Data: the Sentinel-2 L1C sample stack (5 dates) and a median composite of it made by stacube.
Requests alternate between the three kinds (after a warm-up) so machine noise hits them alike;
p50 and p95 are printed with their ratio to the plain mosaic tile.

Low zoom against high zoom (``--zooms``, also run by default): Landsat 8 mosaic tiles of the New
York sample (19 scenes of 3 WRS-2 path/rows) at z7-8, where a tile meets most scenes, and at
z12-13, where one scene fills a tile; p50 of each and their ratio, on three servers side by
side: with the tile cache (``STACUBE_TILE_CACHE_SIZE=128MB``), without it (``0``, every tile
rendered, local files read in the request's thread: ``stacube_services.local_reads``), and
without it on a tile store (``STACUBE_TILE_STORE``) that ``stacube tiles seed`` filled with
z7-8 before the server started (run as a process and timed): that server has rendered none of
the low tiles, as a new process or function instance. Each tile is requested again and again,
as by the people viewing one map, in a random order; the server with the cache renders it once
(the warm-up) and then answers from memory. The first answers are reported too (rendered, but
from the store on the seeded server).

Run: ``.venv/bin/python benchmarks/tile_latency.py [--requests 60] [--zooms-only]``
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import ROOT, TILE_CACHE, benchmark_settings, command_env, machine, percentile, served

S2 = "sentinel-2-l1c-eolearn-sample"
L8 = "landsat-8-c1-l1tp-gdalcubes-sample"
TILE = "WebMercatorQuad/14/8854/5837"
L8_RGB = "assets=B4&assets=B3&assets=B2&rescale=0,0.3&unscale=true"


def prepare(settings) -> dict:
    from stacube.catalog.register import add_datasets, add_product
    from stacube.catalog.pgstac import Catalog
    from stacube.jobs.runner import run_composite
    from stacube.jobs.spec import build_spec

    catalog = Catalog(settings)
    add_product(catalog, ROOT / "data" / "products" / f"{S2}.odc.yaml")
    add_datasets(catalog, [ROOT / "data" / "samples" / "s2-l1c-slovenia-eolearn"])
    spec = build_spec(collections=[S2], bbox="14.5514,45.8659,14.5642,45.8750", datetime="2015-07-01/2015-09-30",
                      method="median", bands=["red", "green", "blue"], indices=["NDVI"])
    return run_composite(spec, settings, workers=1)


def zoom_tiles(catalog) -> dict[str, list[tuple[int, int, int, int]]]:
    """``{"low": [...], "high": [...]}``: ``(z, x, y, items met)`` of the z7-8 tiles meeting the
    most L8 scenes, and of z12-13 tiles inside the area most scenes cover."""
    import morecantile
    from shapely.geometry import box, shape
    from shapely.ops import unary_union

    tms = morecantile.tms.get("WebMercatorQuad")
    footprints = [shape(i["geometry"]) for i in catalog.search({"collections": [L8], "limit": 1000})]
    union = unary_union(footprints)

    def met(t) -> int:
        b = tms.bounds(t)
        return sum(f.intersects(box(b.left, b.bottom, b.right, b.top)) for f in footprints)

    def best(z: int, around, n: int):
        lon, lat = around.x, around.y
        centre = tms.tile(lon, lat, z)
        near = [morecantile.Tile(centre.x + dx, centre.y + dy, z) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
        ranked = sorted(near, key=lambda t: -met(t))[:n]
        return [(t.z, t.x, t.y, met(t)) for t in ranked]

    # the point covered by most footprints (a sample of the union's centroids of overlaps)
    deepest = max((f.centroid for f in footprints), key=lambda p: sum(f.contains(p) for f in footprints))
    return {"low": best(7, union.centroid, 1) + best(8, union.centroid, 2),
            "high": best(12, deepest, 1) + best(13, deepest, 2)}


def seed_low_zooms(settings, store: Path, low: list[tuple[int, int, int, int]]) -> str:
    """``stacube tiles seed`` (a process, as a user runs it) of zooms 7-8 over the low tiles into
    ``store``; its summary line and wall time."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    boxes = [tms.bounds(morecantile.Tile(x, y, z)) for z, x, y, _ in low]
    bbox = (min(b.left for b in boxes), min(b.bottom for b in boxes), max(b.right for b in boxes),
            max(b.top for b in boxes))
    inset = 1e-6  # the tiles themselves, not their neighbours across the edges
    bbox = (bbox[0] + inset, bbox[1] + inset, bbox[2] - inset, bbox[3] - inset)
    env = command_env(settings, STACUBE_TILE_STORE=str(store))
    template = f"/raster/collections/{L8}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?{L8_RGB}"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "stacube.cli.main", "tiles", "seed", template, "--min-zoom", "7",
                          "--max-zoom", "8", "--bbox", ",".join(map(str, bbox))],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return f"{out.stdout.strip()} in {time.perf_counter() - t0:.1f} s"


def zoom_ratio(settings, requests: int) -> None:
    """Low against high zoom, with and without the tile cache (see the module docstring)."""
    from stacube.catalog.pgstac import Catalog
    from stacube.catalog.register import add_datasets, add_product

    catalog = Catalog(settings)
    add_product(catalog, ROOT / "data" / "products" / f"{L8}.odc.yaml")
    add_datasets(catalog, [ROOT / "data" / "samples" / "landsat8-c1-l1tp-newyork-gdalcubes"])
    tiles = zoom_tiles(catalog)
    first: dict[tuple[str, str], list[float]] = {}
    times: dict[tuple[str, str], list[float]] = {}
    store = Path(tempfile.mkdtemp(prefix="stacube-tile-store-"))
    seeded = seed_low_zooms(settings, store, tiles["low"])
    with served(settings, env={"STACUBE_TILE_CACHE_SIZE": TILE_CACHE}) as (cached, _), \
            served(settings, env={"STACUBE_TILE_CACHE_SIZE": "0"}) as (uncached, _), \
            served(settings, env={"STACUBE_TILE_CACHE_SIZE": "0", "STACUBE_TILE_STORE": str(store)}) as (stored, _), \
            httpx.Client(timeout=60) as client:
        servers = {"with the tile cache": cached, "without": uncached, "seeded tile store": stored}
        urls = {(server, zoom): [f"{root}/raster/collections/{L8}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{L8_RGB}"
                                 for z, x, y, _ in tiles[zoom]]
                for server, root in servers.items() for zoom in tiles}
        for key, group in urls.items():  # warm-up: the first answer of each tile is rendered
            for url in group:
                t0 = time.perf_counter()
                r = client.get(url)
                first.setdefault(key, []).append(time.perf_counter() - t0)
                assert r.status_code == 200, (url, r.text)
                if key == ("seeded tile store", "low"):  # a new process: from the store, not rendered
                    assert r.headers["x-tile-cache"] == "hit", url
        rng = random.Random(0)
        for i in range(requests):
            # a new order each time: a rendering's background reads (a mosaic stops waiting for
            # the scenes it no longer needs) do not always land on the same next request
            for key, group in rng.sample(list(urls.items()), len(urls)):
                url = group[i % len(group)]
                t0 = time.perf_counter()
                r = client.get(url)
                times.setdefault(key, []).append(time.perf_counter() - t0)
                assert r.status_code == 200 and len(r.content) > 100
    shutil.rmtree(store, ignore_errors=True)
    print(f"\nL8 New York mosaic (19 scenes), {requests} requests per server and zoom class, interleaved")
    print(f"seeded tile store: `stacube tiles seed` of z7-8 over the low tiles, as a process: {seeded}")
    for zoom in tiles:
        print(f"  {zoom} zoom tiles (z/x/y: scenes met): "
              + ", ".join(f"{z}/{x}/{y}: {n}" for z, x, y, n in tiles[zoom]))
    for server in servers:
        low, high = (percentile(times[(server, z)], 50) for z in ("low", "high"))
        low95, high95 = (percentile(times[(server, z)], 95) for z in ("low", "high"))
        print(f"{server:<20} z<=8 p50 {low * 1e3:7.1f} ms (p95 {low95 * 1e3:6.1f})   z>=12 p50 {high * 1e3:7.1f} ms "
              f"(p95 {high95 * 1e3:6.1f})   z<=8 / z>=12 p50 {low / high:5.2f}x (target <= 2x)")
    for server in servers:
        low, high = (percentile(first[(server, z)], 50) for z in ("low", "high"))
        print(f"{server:<20} first answers: z<=8 p50 {low * 1e3:7.1f} ms, z>=12 {high * 1e3:7.1f} ms: {low / high:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--zooms-only", action="store_true", help="only low against high zoom")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.zooms_only:
        with benchmark_settings("tiles") as settings:
            zoom_ratio(settings, args.requests)
        return
    with benchmark_settings("tiles") as settings:
        report = prepare(settings)
        with served(settings) as (root, _), httpx.Client(timeout=60) as client:
            base = f"{root}/raster"
            urls = {
                "plain RGB mosaic (titiler-pgstac)":
                    f"{base}/collections/{S2}/tiles/{TILE}.png?assets=B04&assets=B03&assets=B02&rescale=0,3000",
                "NDVI mosaic (index=NDVI)": f"{base}/collections/{S2}/tiles/{TILE}.png?index=NDVI",
                "composite item tile (RGB)":
                    f"{base}/collections/{report['collection']}/items/{report['items'][0]}/tiles/{TILE}.png"
                    "?assets=red&assets=green&assets=blue&rescale=0,0.3",
            }
            for url in urls.values():  # warm-up
                for _ in range(3):
                    assert client.get(url).status_code == 200, url
            times: dict[str, list[float]] = {k: [] for k in urls}
            for _ in range(args.requests):
                for name, url in urls.items():
                    t0 = time.perf_counter()
                    r = client.get(url)
                    times[name].append(time.perf_counter() - t0)
                    assert r.status_code == 200 and len(r.content) > 100
    ref = percentile(times["plain RGB mosaic (titiler-pgstac)"], 50)
    for name, values in times.items():
        p50, p95 = percentile(values, 50) * 1e3, percentile(values, 95) * 1e3
        print(f"{name:<36} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   p50 / plain mosaic {p50 / 1e3 / ref:5.2f}x")
    with benchmark_settings("tiles") as settings:
        zoom_ratio(settings, args.requests)


if __name__ == "__main__":
    main()
