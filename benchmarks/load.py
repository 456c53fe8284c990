"""Load: concurrent clients on a mix of STAC searches and mosaic tiles against ``stacube up``.

Each client (an asyncio task with its own connection) loops over the request kinds below until
the time is up: GET and POST item searches with CQL2 filters, sorting and paging; NDVI tiles of
a collection mosaic (``index=NDVI``); RGB tiles of a collection mosaic (``assets=...``); NDVI
tiles of a registered search. Any answer other than 200, and any transport error or timeout,
is an error. The server's resident memory (the process and its workers, psutil) is sampled
every second; start / middle / end and the peak are printed.

Run: ``.venv/bin/python benchmarks/load.py [--clients 50] [--duration 60] [--workers 2]
[--pool-size 8]`` (a throwaway database ``bench_load`` in the embedded cluster, the sample
catalog, a server on a free loopback port).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

S2 = "sentinel-2-l1c-eolearn-sample"
L8 = "landsat-8-c1-l1tp-gdalcubes-sample"
S2_TILES = ["14/8854/5837", "15/17708/11674", "15/17709/11674", "15/17708/11675"]
L8_TILES = ["8/75/95", "8/74/95", "8/75/96", "9/150/191"]


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


def process_rss(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn workers)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


async def run_load(base: str, *, clients: int, duration: float, server_pid: int | None = None,
                   search_id: str | None = None, timeout: float = 60.0, seed: int = 0) -> Stats:
    """``clients`` concurrent clients for ``duration`` seconds; returns the statistics."""
    import httpx

    stats = Stats()
    kinds = request_kinds(base, search_id)
    for kind, *_ in kinds:
        stats.latencies[kind] = []
        stats.errors[kind] = 0
    deadline = time.monotonic() + duration
    started = time.monotonic()

    async def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        order = list(range(len(kinds)))
        async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=1)) as http:
            i = rng.randrange(len(kinds))
            while time.monotonic() < deadline:
                kind, method, url, body = kinds[order[i % len(order)]]
                i += 1
                url = url.replace("{tile}", rng.choice(S2_TILES)).replace("{l8tile}", rng.choice(L8_TILES))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pool-size", type=int, default=8, help="STACUBE_DB_POOL_SIZE per process")
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import benchmark_settings, machine, served

    from stacube.catalog.register import add_datasets, add_product
    from stacube.catalog.pgstac import Catalog

    with benchmark_settings("load") as settings:
        catalog = Catalog(settings)
        for path in sorted((ROOT / "data" / "products").iterdir()):
            add_product(catalog, path)
        add_datasets(catalog, sorted((ROOT / "data" / "samples").iterdir()))
        with served(settings, "--workers", str(args.workers),
                    env={"STACUBE_DB_POOL_SIZE": str(args.pool_size)}) as (base, server):
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
