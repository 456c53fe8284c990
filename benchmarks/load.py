"""Load: stacube's raster API against plain titiler-pgstac, and a mix of STAC searches and
mosaic tiles against ``stacube up``.

**Comparison** (the default): the same tile requests, at the same concurrency, against
``stacube up`` with access control on (the collections private to a workspace, every request
with that workspace's API key) and against titiler-pgstac's own application
(``titiler.pgstac.main:app`` under uvicorn), both serving the same database with the same number
of worker processes and database connections per process, started side by side. Requests:
RGB mosaic tiles of two collections (Sentinel-2 z14-15, Landsat 8 z8-9), tiles of a registered
search and item tiles, titiler-pgstac's own parameters only. Two loads: *hot* (the tiles of a
map many people look at: a few tile addresses, again and again; stacube answers repeats from its
tile cache) and *cold* (every request a rendering never asked before: ``rescale`` differs each
time, so no cache of either server can answer). Each load runs in rounds alternating the two
servers (machine noise hits both); throughput, p50 and p95 are printed with stacube's ratios
(throughput stacube / titiler-pgstac; latencies titiler-pgstac / stacube: > 1 is stacube faster).

**Mix** (``--mix``): each client (an asyncio task with its own connection) loops over the request kinds below until
the time is up: GET and POST item searches with CQL2 filters, sorting and paging; NDVI tiles of
a collection mosaic (``index=NDVI``); RGB tiles of a collection mosaic (``assets=...``); NDVI
tiles of a registered search. Any answer other than 200, and any transport error or timeout,
is an error. The server's resident memory (the process and its workers, psutil) is sampled
every second; start / middle / end and the peak are printed.

Run: ``.venv/bin/python benchmarks/load.py [--clients 16] [--duration 120] [--rounds 4]
[--workers 2] [--pool-size 8]`` (comparison: ``--duration`` seconds per server and load) or
``benchmarks/load.py --mix [--clients 50] [--duration 60]`` (a throwaway database
``bench_load`` in the embedded cluster, the sample catalog, servers on free loopback ports).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

S2 = "sentinel-2-l1c-eolearn-sample"
L8 = "landsat-8-c1-l1tp-gdalcubes-sample"
S2_TILES = ["14/8854/5837", "15/17708/11674", "15/17709/11674", "15/17708/11675"]
L8_TILES = ["8/75/95", "8/74/95", "8/75/96", "9/150/191"]
S2_ITEM = "S2_L1C_20150711T100008"
WORKSPACE = "bench-load"


FRESH = itertools.count(1)


@dataclass
class Stats:
    """Latencies (s) and errors per request kind, and memory samples (bytes)."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + sum(self.errors.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def rss_at(self, fraction: float) -> int:
        if not self.rss:
            return 0
        t0, t1 = self.rss[0][0], self.rss[-1][0]
        target = t0 + (t1 - t0) * fraction
        return min(self.rss, key=lambda s: abs(s[0] - target))[1]


def request_kinds(base: str, search_id: str | None) -> list[tuple[str, str, str, dict | None]]:
    """``(kind, method, url, json body)`` templates; tiles rotate over a few tile addresses."""
    kinds = [
        ("search GET", "GET", f"{base}/stac/search?collections={L8}&bbox=-75,40,-73,42"
                              "&filter=eo:cloud_cover%20%3C%2030&filter-lang=cql2-text&limit=10", None),
        ("search POST", "POST", f"{base}/stac/search", {
            "collections": [L8, S2], "limit": 20,
            "filter-lang": "cql2-json",
            "filter": {"op": "and", "args": [
                {"op": "<", "args": [{"property": "eo:cloud_cover"}, 50]},
                {"op": "t_intersects", "args": [{"property": "datetime"},
                                                {"interval": ["2015-01-01T00:00:00Z", "2018-12-31T23:59:59Z"]}]}]},
            "sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}],
            "fields": {"exclude": ["assets"]}}),
        ("tile NDVI (collection)", "GET",
         f"{base}/raster/collections/{S2}/tiles/WebMercatorQuad/{{tile}}.png?index=NDVI", None),
        ("tile RGB (collection)", "GET",
         f"{base}/raster/collections/{L8}/tiles/WebMercatorQuad/{{l8tile}}.png"
         "?assets=B4&assets=B3&assets=B2&rescale=0,0.3&unscale=true", None),
    ]
    if search_id:
        kinds.append(("tile NDVI (search)", "GET",
                      f"{base}/raster/searches/{search_id}/tiles/WebMercatorQuad/{{tile}}.png?index=NDVI", None))
    return kinds


def register_search(base: str) -> str:
    import httpx

    r = httpx.post(f"{base}/raster/searches/register", timeout=60, json={
        "collections": [S2], "filter-lang": "cql2-json",
        "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 100]}})
    r.raise_for_status()
    return r.json()["id"]


def process_tree_sum(pid: int, measure) -> float:
    """``measure(process)`` summed over a process and its children (uvicorn workers)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            total += measure(p)
        except psutil.NoSuchProcess:
            pass
    return total


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children."""
    return process_tree_sum(pid, lambda p: p.cpu_times().user + p.cpu_times().system)


def process_rss(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn workers)."""
    return int(process_tree_sum(pid, lambda p: p.memory_info().rss))


def tile_kinds(raster: str, search_id: str, *, cold: bool) -> list[tuple[str, str, str, None]]:
    """The comparison's requests under ``raster`` (the raster API's root): titiler-pgstac's own
    parameters only; ``cold``: ``rescale`` differs in every request (``{n}``)."""
    fresh = "{n}" if cold else ""
    rgb = f"assets=B04&assets=B03&assets=B02&rescale=0,3000{'.' + fresh if cold else ''}"
    return [
        ("S2 mosaic z14-15", "GET", f"{raster}/collections/{S2}/tiles/WebMercatorQuad/{{tile}}.png?{rgb}", None),
        ("L8 mosaic z8-9", "GET", f"{raster}/collections/{L8}/tiles/WebMercatorQuad/{{l8tile}}.png"
                                  f"?assets=B4&assets=B3&assets=B2&rescale=0,0.3{fresh}&unscale=true", None),
        ("S2 search mosaic", "GET", f"{raster}/searches/{search_id}/tiles/WebMercatorQuad/{{tile}}.png?{rgb}", None),
        ("S2 item", "GET", f"{raster}/collections/{S2}/items/{S2_ITEM}/tiles/WebMercatorQuad/{{tile}}.png?{rgb}",
         None),
    ]


async def run_load(base: str, *, clients: int, duration: float, server_pid: int | None = None,
                   search_id: str | None = None, timeout: float = 60.0, seed: int = 0,
                   kinds: list | None = None, headers: dict | None = None) -> Stats:
    """``clients`` concurrent clients for ``duration`` seconds; returns the statistics.

    Args:
        kinds: ``(kind, method, URL template, JSON body)`` to cycle through (default: the mix of
            :func:`request_kinds`); ``{tile}``, ``{l8tile}`` become tile addresses, ``{n}`` a
            number never used before in this process.
        headers: sent with every request (credentials).
    """
    import httpx

    stats = Stats()
    kinds = kinds or request_kinds(base, search_id)
    for kind, *_ in kinds:
        stats.latencies[kind] = []
        stats.errors[kind] = 0
    deadline = time.monotonic() + duration
    started = time.monotonic()

    async def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        order = list(range(len(kinds)))
        async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=1),
                                     headers=headers) as http:
            i = rng.randrange(len(kinds))
            while time.monotonic() < deadline:
                kind, method, url, body = kinds[order[i % len(order)]]
                i += 1
                url = url.replace("{tile}", rng.choice(S2_TILES)).replace("{l8tile}", rng.choice(L8_TILES))
                url = url.replace("{n}", str(next(FRESH)))
                t0 = time.perf_counter()
                try:
                    r = await http.request(method, url, json=body)
                    ok = r.status_code == 200 and len(r.content) > 0
                    reason = f"{r.status_code} {r.text[:120]!r}" if not ok else ""
                except httpx.HTTPError as exc:
                    ok, reason = False, f"{type(exc).__name__}: {exc}"
                took = time.perf_counter() - t0
                if ok:
                    stats.latencies[kind].append(took)
                else:
                    stats.errors[kind] += 1
                    if len(stats.error_examples) < 10:
                        stats.error_examples.append(f"{kind}: {reason}")

    async def sampler() -> None:
        while time.monotonic() < deadline:
            stats.rss.append((time.monotonic(), process_rss(server_pid)))
            await asyncio.sleep(1.0)
        stats.rss.append((time.monotonic(), process_rss(server_pid)))

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    if server_pid:
        tasks.append(asyncio.create_task(sampler()))
    await asyncio.gather(*tasks)
    stats.elapsed = time.monotonic() - started
    return stats


def report(stats: Stats, *, clients: int) -> str:
    import numpy as np

    lines = [f"{clients} clients, {stats.elapsed:.1f} s: {stats.requests} requests, "
             f"{stats.requests / stats.elapsed:.1f} requests/s, {stats.error_count} errors"]
    lines.append(f"{'kind':<24} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for kind, values in stats.latencies.items():
        if values:
            p50, p95, p99 = (float(np.percentile(values, q)) * 1e3 for q in (50, 95, 99))
        else:
            p50 = p95 = p99 = float("nan")
        lines.append(f"{kind:<24} {len(values):>8} {len(values) / stats.elapsed:>7.1f} {p50:>8.1f} "
                     f"{p95:>8.1f} {p99:>8.1f} {stats.errors[kind]:>6}")
    if stats.rss:
        mb = 1024 * 1024
        lines.append(f"server RSS: start {stats.rss_at(0) / mb:.0f} MiB, middle {stats.rss_at(0.5) / mb:.0f} MiB, "
                     f"end {stats.rss_at(1) / mb:.0f} MiB, peak {max(r for _, r in stats.rss) / mb:.0f} MiB")
    for example in stats.error_examples:
        lines.append(f"  error: {example}")
    return "\n".join(lines)


def merge(parts: list[Stats]) -> Stats:
    """The statistics of several runs as one (elapsed times added)."""
    out = Stats()
    for part in parts:
        for kind, values in part.latencies.items():
            out.latencies.setdefault(kind, []).extend(values)
        for kind, count in part.errors.items():
            out.errors[kind] = out.errors.get(kind, 0) + count
        out.error_examples += part.error_examples[:10 - len(out.error_examples)]
        out.elapsed += part.elapsed
    return out


def overall(stats: Stats) -> tuple[float, float, float]:
    """``(answered requests per second, p50 s, p95 s)`` over every kind."""
    import numpy as np

    values = [v for vs in stats.latencies.values() for v in vs]
    if not values:
        return 0.0, float("nan"), float("nan")
    return len(values) / stats.elapsed, float(np.percentile(values, 50)), float(np.percentile(values, 95))


@contextmanager
def served_titiler(settings, *, workers: int, pool_size: int):
    """titiler-pgstac's own application (``titiler.pgstac.main:app``) under uvicorn on a free
    loopback port, on the database of ``settings``; yields ``(base URL, process)``."""
    from common import free_port, running

    port = free_port()
    env = {**os.environ, "DATABASE_URL": settings.dsn(), "DB_MIN_CONN_SIZE": "1",
           "DB_MAX_CONN_SIZE": str(pool_size)}
    base = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "uvicorn", "titiler.pgstac.main:app", "--host", "127.0.0.1",
                  "--port", str(port), "--workers", str(workers), "--log-level", "warning"], env,
                 f"{base}/healthz") as server:
        yield base, server


def private_to_workspace(settings, collections: list[str]) -> str:
    """Make ``collections`` private to a new workspace; returns an API key of it."""
    from stacube.access.workspaces import AccessStore

    store = AccessStore(settings)
    store.create_workspace(WORKSPACE)
    for cid in collections:
        store.set_access(cid, workspace=WORKSPACE)
    return store.create_key(WORKSPACE, label="load benchmark").key


def load_samples(settings) -> None:
    from stacube.catalog.pgstac import Catalog
    from stacube.catalog.register import add_datasets, add_product

    catalog = Catalog(settings)
    for path in sorted((ROOT / "data" / "products").iterdir()):
        add_product(catalog, path)
    add_datasets(catalog, sorted((ROOT / "data" / "samples").iterdir()))


def compare(args) -> int:
    """The comparison with titiler-pgstac (see the module docstring); returns the error count."""
    import httpx

    from common import TILE_CACHE, benchmark_settings, machine, served

    results: dict[tuple[str, str], list[Stats]] = {}
    load_before = os.getloadavg()[0]
    cpu_used: dict[tuple[str, str], float] = {}  # server CPU seconds (its processes, not the database's)
    with benchmark_settings("load") as settings:
        load_samples(settings)
        key = private_to_workspace(settings, [S2, L8])
        credentials = {"X-API-Key": key}
        pool = str(args.pool_size)
        with served(settings, "--workers", str(args.workers), env={"STACUBE_DB_POOL_SIZE": pool, "STACUBE_TILE_CACHE_SIZE": TILE_CACHE}) as (base, ours), \
                served_titiler(settings, workers=args.workers, pool_size=args.pool_size) as (plain, theirs):
            r = httpx.post(f"{base}/raster/searches/register", headers=credentials, timeout=60,
                           json={"collections": [S2]})
            r.raise_for_status()
            search_id = r.json()["id"]  # the same search (hash) for both: one database
            sides = {"stacube": (f"{base}/raster", credentials), "titiler-pgstac": (plain, None)}
            pids = {"stacube": ours.pid, "titiler-pgstac": theirs.pid}
            for name, (raster, headers) in sides.items():  # warm-up: imports, pools, GDAL caches
                warm = asyncio.run(run_load(raster, clients=4, duration=args.warmup, headers=headers,
                                            kinds=tile_kinds(raster, search_id, cold=True)))
                if warm.error_count:
                    print(f"{name} warm-up errors: {warm.error_examples}")
            for load in ("hot", "cold"):
                for r in range(args.rounds):
                    order = list(sides) if r % 2 == 0 else list(reversed(sides))
                    for name in order:
                        raster, headers = sides[name]
                        cpu = process_cpu(pids[name])
                        stats = asyncio.run(run_load(
                            raster, clients=args.clients, duration=args.duration / args.rounds, headers=headers,
                            kinds=tile_kinds(raster, search_id, cold=load == "cold"), seed=r))
                        cpu_used[(load, name)] = cpu_used.get((load, name), 0.0) + process_cpu(pids[name]) - cpu
                        results.setdefault((load, name), []).append(stats)
    print(f"machine: {machine()}, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; {args.workers} uvicorn worker(s) and "
          f"{args.pool_size} database connections per process on each side; {args.clients} clients; "
          f"{args.duration:.0f} s per server and load in {args.rounds} alternating rounds")
    errors = 0
    for load in ("hot", "cold"):
        ours, theirs = merge(results[(load, "stacube")]), merge(results[(load, "titiler-pgstac")])
        errors += ours.error_count + theirs.error_count
        (t1, a50, a95), (t0, b50, b95) = overall(ours), overall(theirs)
        print(f"\n{load} load")
        print(f"{'server':<37} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms/req':>10} {'errors':>6}")
        cpu = {}
        for name, label, (t, p50, p95), st in (
                ("stacube", "stacube (access control on)", (t1, a50, a95), ours),
                ("titiler-pgstac", "titiler-pgstac (titiler.pgstac.main)", (t0, b50, b95), theirs)):
            answered = sum(len(v) for v in st.latencies.values()) or 1
            cpu[name] = cpu_used.get((load, name), 0.0) / answered
            print(f"{label:<37} {t:>7.1f} {p50 * 1e3:>8.1f} {p95 * 1e3:>8.1f} {cpu[name] * 1e3:>10.1f} "
                  f"{st.error_count:>6}")
        print(f"{'ratio (stacube better when > 1)':<37} {t1 / t0:>6.2f}x {b50 / a50:>7.2f}x {b95 / a95:>7.2f}x "
              f"{cpu['titiler-pgstac'] / cpu['stacube']:>9.2f}x")
        for kind in ours.latencies:
            mine, other = ours.latencies[kind], theirs.latencies.get(kind, [])
            if mine and other:
                print(f"  {kind:<22} p50 {percentile(mine, 50):7.1f} vs {percentile(other, 50):7.1f} ms, "
                      f"p95 {percentile(mine, 95):7.1f} vs {percentile(other, 95):7.1f} ms")
        for example in ours.error_examples + theirs.error_examples:
            print(f"  error: {example}")
    return errors


def percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", action="store_true", help="STAC searches and tiles against stacube alone")
    parser.add_argument("--clients", type=int, default=None, help="concurrent clients (16; --mix: 50)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per server and load (120, in --rounds rounds; --mix: 60)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of the comparison")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pool-size", type=int, default=8, help="database connections per process")
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    if not args.mix:
        args.clients = args.clients or 16
        args.duration = args.duration or 120.0
        sys.exit(1 if compare(args) else 0)
    args.clients = args.clients or 50
    args.duration = args.duration or 60.0
    from common import TILE_CACHE, benchmark_settings, machine, served

    with benchmark_settings("load") as settings:
        load_samples(settings)
        with served(settings, "--workers", str(args.workers),
                    env={"STACUBE_DB_POOL_SIZE": str(args.pool_size), "STACUBE_TILE_CACHE_SIZE": TILE_CACHE}) as (base, server):
            search_id = register_search(base)
            asyncio.run(run_load(base, clients=min(args.clients, 10), duration=args.warmup,
                                 search_id=search_id))
            stats = asyncio.run(run_load(base, clients=args.clients, duration=args.duration,
                                         server_pid=server.pid, search_id=search_id))
    print(f"machine: {machine()}; server: {args.workers} worker(s), STACUBE_DB_POOL_SIZE={args.pool_size}")
    print(report(stats, clients=args.clients))
    if stats.error_count:
        sys.exit(1)


if __name__ == "__main__":
    main()
