"""Registering the 3,537 real STAC Items of the shared fixtures: stacube against raw pypgstac.

Both sides load the same ndjson files into a fresh pgSTAC database (same cluster) that already
holds the collections:

* stacube: ``stacube.catalog.register.add_datasets`` - every item read and checked first, then
  one all-or-nothing transaction of pypgstac's loader in ``upsert`` mode;
* baseline: pypgstac's ``Loader.load_items`` on each file in ``insert`` mode (what
  ``pypgstac load items FILE`` does), no validation, a commit per partition.

Target: stacube's throughput at least 0.8 of the baseline's. Run:
``.venv/bin/python benchmarks/registration.py [--repeat 3]`` (needs ../shared/data/stac).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from common import ROOT, benchmark_settings, machine

STAC = ROOT.parent / "shared" / "data" / "stac"


UNASSIGNED = "dea-unassigned"


def prepared_files(workdir: Path) -> list[Path]:
    """Copies of the fixture files; the one item that names no collection gets ``dea-unassigned``
    (pgSTAC needs a collection for every item, on both sides alike)."""
    out = []
    for path in sorted(STAC.glob("*/*.ndjson")):
        target = workdir / f"{path.parent.name}__{path.name}"
        with target.open("w") as dst:
            for line in path.open():
                if not line.strip():
                    continue
                doc = json.loads(line)
                if not doc.get("collection"):
                    doc["collection"] = UNASSIGNED
                    line = json.dumps(doc) + "\n"
                dst.write(line)
        out.append(target)
    return out


def collection_documents(files: list[Path]) -> dict[str, dict]:
    """A collection document for every collection the items name (real ones where shipped)."""
    docs: dict[str, dict] = {}
    for path in sorted(STAC.glob("*/collections/*.json")):
        doc = json.loads(path.read_text())
        docs.setdefault(doc["id"], doc)
    for path in files:
        for line in path.open():
            cid = json.loads(line).get("collection")
            docs.setdefault(cid, {
                "type": "Collection", "stac_version": "1.0.0", "id": cid, "description": cid,
                "license": "other", "links": [],
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
            })
    return docs


def load_collections(settings, docs: dict[str, dict]) -> None:
    from stacube.catalog.pgstac import Catalog

    catalog = Catalog(settings)
    for doc in docs.values():
        doc = {k: v for k, v in doc.items() if k != "stacube:quality"}
        catalog.upsert_collection(doc)


def run_stacube(settings, files) -> int:
    from stacube.catalog.register import add_datasets
    from stacube.catalog.pgstac import Catalog

    return add_datasets(Catalog(settings), files).items


def run_pypgstac(settings, files) -> int:
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    db = PgstacDB(dsn=settings.dsn())
    loader = Loader(db=db)
    for f in files:
        loader.load_items(str(f), insert_mode=Methods.insert)
    n = db.query_one("SELECT count(*) FROM items")
    db.close()
    return int(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import tempfile

    files = prepared_files(Path(tempfile.mkdtemp(prefix="stacube-bench-")))
    docs = collection_documents(files)
    n_items = sum(1 for f in files for line in f.open() if line.strip())
    print(f"machine: {machine()}")
    print(f"{n_items} items in {len(files)} files, {len(docs)} collections")
    timings: dict[str, list[float]] = {"stacube": [], "pypgstac": []}
    for rep in range(args.repeat):
        for name, fn in (("stacube", run_stacube), ("pypgstac", run_pypgstac))[:: 1 if rep % 2 == 0 else -1]:
            with benchmark_settings(f"registration_{name}") as settings:
                load_collections(settings, docs)
                t0 = time.perf_counter()
                loaded = fn(settings, files)
                timings[name].append(time.perf_counter() - t0)
                assert loaded == n_items, (name, loaded)
    ours, base = statistics.median(timings["stacube"]), statistics.median(timings["pypgstac"])
    print(f"stacube  {ours:6.2f} s  ({n_items / ours:7.0f} items/s)  validated, one transaction, upsert")
    print(f"pypgstac {base:6.2f} s  ({n_items / base:7.0f} items/s)  raw load, insert")
    print(f"throughput ratio stacube/pypgstac: {base / ours:4.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
