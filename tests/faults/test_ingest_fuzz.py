"""Fuzzing the ingest path with malformed STAC Items and corrupt or truncated COGs.

Items: real ones (public catalogues: ``tests/data/stac``, and ``../shared/data/stac`` when
present; the samples) mutated by
hypothesis: wrong types, missing members, bad geometries, bad datetimes, huge / NaN / infinite
numbers, unicode, deep nesting. Each batch goes through ``add_datasets`` (and a few through
``stacube dataset add`` and the S3 ingest function): it is either loaded whole, or rejected with
``InvalidInput`` whose one-line message names the source and the item, and then the catalog is
unchanged (item count and a checksum of the items table). Any other exception is a bug.
COGs: truncated, bytes flipped, a text file and an empty file named ``.tif``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stacube.catalog.register import add_datasets
from stacube.errors import InvalidInput
from stacube_testing import ROOT, SAMPLES, SHARED

TARGET = "ingest-fuzz"
S2_STACK = SAMPLES / "s2-l1c-slovenia-eolearn"


def checksum(catalog) -> tuple[int, str]:
    with catalog.connection() as conn:
        row = conn.execute(
            "SELECT count(*), md5(coalesce(string_agg(collection || '/' || id || ':' || content::text, ','"
            " ORDER BY collection, id), '')) FROM pgstac.items").fetchone()
    return row[0], row[1]


def base_items(catalog) -> list[dict]:
    """A few real items, moved into the fuzz collection."""
    shipped = ROOT / "tests" / "data" / "stac" / "earth-search-sentinel-2-c1-l2a.ndjson"
    items = [orjson.loads(line) for line in shipped.read_bytes().splitlines()[:3]]
    for path in sorted((SHARED / "stac").glob("*/*.ndjson"))[:6]:  # the shared data, when present
        with open(path, "rb") as f:
            line = f.readline()
        if line.strip():
            items.append(orjson.loads(line))
    for collection, item_id in (("sentinel-2-l1c-eolearn-sample", "S2_L1C_20150711T100008"),
                                ("landsat-8-c1-l1tp-gdalcubes-sample", "LC08_L1TP_014031_20180106_20180119_01_T1")):
        items.append(catalog.get_item(collection, item_id))
    out = []
    for item in items:
        item = {k: v for k, v in item.items() if k != "links"}
        item["collection"] = TARGET
        out.append(item)
    return out


@pytest.fixture(scope="module")
def fuzz_catalog(samples):
    doc = copy.deepcopy(samples.get_collection("sentinel-2-l1c-eolearn-sample"))
    doc["id"] = TARGET
    doc["links"] = []
    samples.upsert_collection(doc)
    yield samples
    samples.delete_collection(TARGET)


# -- mutations ----------------------------------------------------------------------------------
def nested(depth: int):
    value: object = "x"
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    return value


BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324]),
    st.text(max_size=20), st.sampled_from(["", "\x00", "é\u202e\ud7ff", "🛰️" * 10, "a" * 5000]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from([nested(60), nested(200)]),
)
BAD_DATETIMES = st.sampled_from([
    "2020-13-01T00:00:00Z", "2020-02-30T00:00:00Z", "2020-01-01", "2020-01-01T00:00:00", "yesterday",
    "10000-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "2020-01-01T25:00:00Z", "", "2020-01-01T00:00:00+99:00",
])
BAD_GEOMETRIES = st.sampled_from([
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},  # not closed
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},  # too short
    {"type": "Polygon", "coordinates": [[0, 0], [1, 0]]},  # wrong depth
    {"type": "Polygon", "coordinates": []},
    {"type": "Point", "coordinates": [math.nan, 0]},
    {"type": "Point", "coordinates": [1e308, -1e308]},
    {"type": "Point", "coordinates": ["1", "2"]},
    {"type": "Point"},
    {"type": "Circle", "coordinates": [0, 0]},
    {"type": "MultiPolygon", "coordinates": [[]]},
    {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": []}]},
    {"type": "LineString", "coordinates": [[0, 0]]},
    "POINT(0 0)", [], 42,
])
TOP = ["type", "id", "collection", "geometry", "bbox", "properties", "assets", "stac_version",
       "stac_extensions", "links"]


@st.composite
def mutated(draw, bases):
    item = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(st.sampled_from(["drop", "top", "property", "datetime", "geometry", "bbox", "asset",
                                     "id"]))
        if kind == "drop":
            item.pop(draw(st.sampled_from(TOP)), None)
        elif kind == "top":
            item[draw(st.sampled_from(TOP))] = draw(BAD_VALUES)
        elif kind == "property" and isinstance(item.get("properties"), dict):
            key = draw(st.sampled_from(["datetime", "start_datetime", "end_datetime", "eo:cloud_cover",
                                        "proj:epsg", "platform", "ünïcödé", ""]))
            item["properties"][key] = draw(BAD_VALUES)
        elif kind == "datetime" and isinstance(item.get("properties"), dict):
            item["properties"]["datetime"] = draw(BAD_DATETIMES)
        elif kind == "geometry":
            item["geometry"] = draw(BAD_GEOMETRIES)
        elif kind == "bbox":
            item["bbox"] = draw(st.sampled_from([[0, 0, 1], [0, 0, 1, 1, 2], [math.nan, 0, 1, 1],
                                                 ["a", 0, 1, 1], [1e309, 0, 1, 1], {}, "0,0,1,1"]))
        elif kind == "asset" and isinstance(item.get("assets"), dict) and item["assets"]:
            key = draw(st.sampled_from(sorted(item["assets"])))
            item["assets"][key] = draw(st.one_of(BAD_VALUES, st.builds(lambda v: {"href": v}, BAD_VALUES)))
        elif kind == "id":
            item["id"] = draw(st.sampled_from(["", " ", "a/b", "../etc", "x" * 2000, "é", "a\nb", None, 7]))
    return item


def dump(doc) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY) if not _has_nan(doc) else \
        json.dumps(doc, allow_nan=True).encode()


def _has_nan(doc) -> bool:
    if isinstance(doc, float):
        return not math.isfinite(doc)
    if isinstance(doc, dict):
        return any(_has_nan(v) for v in doc.values())
    if isinstance(doc, list):
        return any(_has_nan(v) for v in doc)
    return False


def test_malformed_items_are_rejected_with_a_reason_and_leave_the_catalog_unchanged(fuzz_catalog, tmp_path):
    catalog = fuzz_catalog
    bases = base_items(catalog)
    assert len(bases) >= 4
    outcomes = {"rejected": 0, "loaded": 0}
    # the catalog's checksum before each example: it changes only when an example loaded an item
    # (removed again), so it is taken again only then
    state = {"before": checksum(catalog)}

    @given(item=mutated(bases))
    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(item):
        path = tmp_path / "batch.ndjson"
        try:
            line = dump(item)
        except (TypeError, ValueError, RecursionError, orjson.JSONEncodeError):
            return  # not representable as JSON at all
        path.write_bytes(line + b"\n")
        before = state["before"]
        try:
            result = add_datasets(catalog, [path])
        except InvalidInput as exc:
            message = exc.message
            assert "\n" not in message and message.strip(), repr(message)
            assert "batch.ndjson" in message or "item" in message, message
            assert checksum(catalog) == before, message
            outcomes["rejected"] += 1
            return
        # loaded: a valid item after all; it must read back as JSON, then it is removed again
        outcomes["loaded"] += 1
        assert result.items == 1
        stored = catalog.get_item(TARGET, item["id"])
        orjson.dumps(stored)
        catalog.delete_items(TARGET, [item["id"]])
        state["before"] = checksum(catalog)

    check()
    print(f"ingest fuzz: {outcomes}")
    assert outcomes["rejected"] >= 150


# -- corrupt COGs --------------------------------------------------------------------------------
def corrupt(kind: str, folder: Path) -> Path:
    source = sorted(S2_STACK.rglob("*.tif"))[0]
    data = source.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "B04.tif"
    if kind == "truncated-header":
        target.write_bytes(data[:300])
    elif kind == "truncated-half":
        target.write_bytes(data[: len(data) // 2])
    elif kind == "flipped-header":
        target.write_bytes(bytes(b ^ 0xFF if 8 <= i < 200 else b for i, b in enumerate(data)))
    elif kind == "flipped-data":
        cut = len(data) // 2
        target.write_bytes(data[:cut] + bytes(b ^ 0x5A for b in data[cut:cut + 4096]) + data[cut + 4096:])
    elif kind == "text":
        target.write_text("this is not a GeoTIFF\n")
    elif kind == "empty":
        target.write_bytes(b"")
    return target


COG_CASES = ["truncated-header", "truncated-half", "flipped-header", "flipped-data", "text", "empty"]


@pytest.mark.parametrize("kind", COG_CASES)
def test_corrupt_cogs_are_rejected_naming_the_file(fuzz_catalog, tmp_path, kind):
    catalog = fuzz_catalog
    folder = tmp_path / "20200101_scene"
    bad = corrupt(kind, folder)
    before = checksum(catalog)
    with pytest.raises(InvalidInput) as info:
        add_datasets(catalog, [folder], collection=TARGET)
    assert "\n" not in info.value.message and bad.name in info.value.message, info.value.message
    assert checksum(catalog) == before


def test_the_cli_rejects_bad_items_and_cogs_with_one_line(fuzz_catalog, cli, tmp_path):
    catalog = fuzz_catalog
    before = checksum(catalog)
    good = base_items(catalog)[-1]
    bad = dict(good, id="cli-bad", geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]})
    (tmp_path / "items.ndjson").write_bytes(orjson.dumps(dict(good, id="cli-good")) + b"\n"
                                           + orjson.dumps(bad) + b"\n")
    out = cli("dataset", "add", str(tmp_path / "items.ndjson"))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "cli-bad" in out.stderr and "Traceback" not in out.stderr
    corrupt("truncated-half", tmp_path / "cog" / "20200101_scene")
    out = cli("dataset", "add", str(tmp_path / "cog"), "--collection", TARGET)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "B04.tif" in out.stderr
    assert checksum(catalog) == before  # the good item of the first batch was not loaded either


def test_the_s3_ingest_function_rejects_bad_objects(fuzz_catalog, s3_server, tmp_path, monkeypatch):
    """Through the ingest Lambda handler (direct S3 events against moto): each bad object fails
    its message with the reason; nothing is registered."""
    import importlib.util

    import boto3

    from stacube_testing import ROOT

    catalog = fuzz_catalog
    monkeypatch.syspath_prepend(str(ROOT))  # the lambdas package
    monkeypatch.setenv("STACUBE_S3_ENDPOINT", s3_server)
    monkeypatch.setenv("STACUBE_INGEST_PREFIX", "ingest/")
    for key in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(key, raising=False)
    # a private copy of the module: its settings are read at import, like a function's cold start
    spec = importlib.util.spec_from_file_location("ingest_handler_under_fuzz",
                                                  ROOT / "lambdas" / "ingest" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    s3 = boto3.client("s3", endpoint_url=s3_server)
    bucket = "ingest-fuzz"
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    good = base_items(catalog)[-1]
    objects = {
        f"ingest/{TARGET}/broken.json": b'{"type": "Feature", "id": ',
        f"ingest/{TARGET}/nan.json": json.dumps(dict(good, id="nan-bbox", bbox=[math.nan, 0, 1, 1])).encode(),
        f"ingest/{TARGET}/nogeom.json": orjson.dumps({k: v for k, v in good.items() if k != "geometry"}),
        f"ingest/{TARGET}/20200101_scene/B04.tif": corrupt("truncated-half", tmp_path / "c").read_bytes(),
        f"ingest/{TARGET}/text.tif": b"not a tiff",
    }
    before = checksum(catalog)
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                              "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}
        with pytest.raises(InvalidInput) as info:  # direct S3 events raise (Lambda retries them)
            module.handler(event)
        message = str(info.value)
        assert "\n" not in message and key.rsplit("/", 1)[-1].split(".")[0] in message or key in message, \
            (key, message)
    assert checksum(catalog) == before
    shutil.rmtree(tmp_path / "c", ignore_errors=True)
