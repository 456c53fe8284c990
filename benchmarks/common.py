"""Helpers shared by the benchmarks: timing, memory, a database, generated COG stacks."""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: the tile cache of the stacube servers the tile benchmarks start (STACUBE_TILE_CACHE_SIZE, the default)
TILE_CACHE = "128MB"
sys.path.insert(0, str(ROOT / "src"))


def timed(fn, *args, repeat: int = 3, **kwargs) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def peak_memory(fn, *args, **kwargs) -> tuple[int, object]:
    """Peak bytes allocated (tracemalloc; numpy reports its buffers) while ``fn`` runs."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result = fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def row(name: str, ours: float, base: float, unit: str = "s", better: str = "lower") -> str:
    ratio = base / ours if better == "lower" else ours / base
    return f"{name:<48} stacube {ours:10.3f} {unit}   baseline {base:10.3f} {unit}   ratio {ratio:6.2f}x"


@contextmanager
def benchmark_settings(name: str, port: int | None = None):
    """Settings pointing at a fresh database ``bench_<name>`` in the embedded cluster (started if
    needed, in ``.stacube``); the database is dropped afterwards."""
    import psycopg

    from stacube.db.migrate import migrate
    from stacube.db.embedded import EmbeddedCluster
    from stacube.settings import Settings

    base = Settings(**({"db_port": port} if port else {}))
    cluster = EmbeddedCluster(base)
    cluster.start()
    db = f"bench_{name}"
    admin = f"postgresql://postgres@127.0.0.1:{base.db_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    settings = Settings(db_name=db, db_port=base.db_port)
    migrate(settings)
    try:
        yield settings
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command_env(settings, **extra: str) -> dict:
    """The environment of a ``stacube`` process on the database of ``settings`` (no admin key:
    access control off), with ``extra`` variables."""
    environ = {**os.environ, "STACUBE_DB_NAME": settings.db_name, "STACUBE_DB_PORT": str(settings.db_port), **extra}
    environ.pop("STACUBE_API_KEY", None)
    return environ


@contextmanager
def served(settings, *args: str, env: dict | None = None):
    """``stacube up`` (extra CLI ``args``) on a free loopback port, on the database of
    ``settings``; yields ``(base URL, server process)`` once ``/stac/`` answers, stops it after."""
    port = free_port()
    environ = command_env(settings, STACUBE_PORT=str(port), **(env or {}))
    base = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "stacube.cli.main", "up", "--port", str(port), *args], environ,
                 f"{base}/stac/") as server:
        yield base, server


@contextmanager
def running(command: list[str], env: dict, ready_url: str):
    """A server process (``command`` run in the repository with ``env``); yields it once
    ``ready_url`` answers 200 (or after 60 s), stops it after."""
    import subprocess

    import httpx

    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(ready_url, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


def synthetic_stack(dates: int, bands: int, size: int, *, seed: int = 0, cloud: float = 0.3):
    """A reflectance-like uint16 stack ``(dates, bands, size, size)`` and a Landsat C1 BQA-like
    uint16 quality stack ``(dates, size, size)`` with blobby clouds covering about ``cloud``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((bands, size, size), dtype=np.float32), 8)
    base = (base - base.min()) / (base.max() - base.min())
    data = np.empty((dates, bands, size, size), dtype=np.uint16)
    quality = np.empty((dates, size, size), dtype=np.uint16)
    for t in range(dates):
        noise = rng.normal(0, 0.02, (bands, size, size)).astype(np.float32)
        data[t] = np.clip((0.05 + 0.3 * base + noise) * 10000, 1, 65534).astype(np.uint16)
        field = ndimage.gaussian_filter(rng.random((size, size), dtype=np.float32), 16)
        cloudy = field > np.quantile(field, 1 - cloud)
        quality[t] = np.where(cloudy, 2800, 2720)  # BQA: cloud / clear
        data[t][:, cloudy] = 9000
    return data, quality


def write_cog_stack(folder: Path, data: np.ndarray, quality: np.ndarray, *, crs: str = "EPSG:32633",
                    origin=(500000.0, 5000000.0), resolution: float = 10.0,
                    band_names=("B02", "B03", "B04", "B08", "B11", "B12")) -> list[dict]:
    """Write a generated stack as COGs (one folder per date) and return manifest-like entries."""
    import rasterio
    from rasterio.transform import from_origin
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    dates, bands, ny, nx = data.shape
    transform = from_origin(origin[0], origin[1], resolution, resolution)
    entries = []
    for t in range(dates):
        item_dir = folder / f"scene_{t:03d}"
        item_dir.mkdir(parents=True, exist_ok=True)
        layers = {band_names[b]: data[t, b] for b in range(bands)}
        layers["BQA"] = quality[t]
        for name, array in layers.items():
            tmp = item_dir / f"{name}.tmp.tif"
            with rasterio.open(tmp, "w", driver="GTiff", width=nx, height=ny, count=1, dtype="uint16",
                               crs=crs, transform=transform, nodata=0 if name != "BQA" else 1) as dst:
                dst.write(array, 1)
                if name != "BQA":
                    dst.scales, dst.offsets = (1e-4,), (0.0,)
            cog_translate(str(tmp), str(item_dir / f"{name}.tif"), cog_profiles.get("deflate"), quiet=True)
            tmp.unlink()
        entries.append({"dir": item_dir, "date": f"2020-{1 + t // 28:02d}-{1 + t % 28:02d}"})
    return entries


COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22"}


def register_synthetic(catalog, collection_id: str, folder: Path, entries: list[dict], *, crs: str,
                       bands=("B02", "B03", "B04", "B08")) -> None:
    """Register a generated stack: a collection with the BQA rule, one item per date."""
    from stacube.catalog.ingest import item_from_cogs
    from stacube.catalog.products import attach_quality
    from stacube.catalog.quality import preset

    item_assets = {b: {"roles": ["data"], "eo:bands": [{"name": b, "common_name": COMMON[b]}],
                       "raster:bands": [{"data_type": "uint16", "nodata": 0, "scale": 1e-4}]} for b in bands}
    item_assets["BQA"] = {"roles": ["data-mask"], "raster:bands": [{"data_type": "uint16", "nodata": 1}]}
    collection = {
        "type": "Collection", "stac_version": "1.1.0", "id": collection_id, "description": "generated stack",
        "license": "other", "links": [], "item_assets": item_assets,
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "stacube:storage": {"crs": crs, "resolution": [10.0, 10.0]},
    }
    attach_quality(collection, preset("landsat-c1-bqa", "BQA"))
    catalog.upsert_collection(collection)
    from datetime import datetime, timezone

    items = []
    for e in entries:
        files = {b: e["dir"] / f"{b}.tif" for b in (*bands, "BQA")}
        when = datetime.fromisoformat(e["date"]).replace(hour=10, tzinfo=timezone.utc)
        items.append(item_from_cogs(e["dir"].name, when, files, collection=collection_id,
                                    asset_fields={}, template=collection))
    catalog.load_items(items)
    # as `stacube dataset add` does: the registered folder becomes a read prefix of the collection
    from stacube.access.prefixes import registered_roots
    from stacube.access.workspaces import AccessStore

    for cid, roots in registered_roots([folder], items).items():
        AccessStore(catalog.settings).add_collection_prefixes(cid, roots)


def machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
