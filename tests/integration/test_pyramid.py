"""Static tile pyramids: jobs write WebMercatorQuad XYZ tiles beside their COGs, served as plain
files, drawn as rio-tiler draws the same tile from the COGs, and registered on the items."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from rio_tiler.colormap import cmap
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from stacube_testing import run_cli

from stacube.errors import InvalidInput
from stacube.jobs import pyramid, tasks
from stacube.jobs.runner import check, run_composite
from stacube.jobs.spec import PyramidSpec, build_spec
from stacube.jobs.state import JobStore
from stacube.settings import Settings

COLLECTION = "sentinel-2-l1c-eolearn-sample"
SLOVENIA = {"collections": [COLLECTION], "bbox": "14.5514,45.8659,14.5642,45.8750",
            "datetime": "2015-07-01/2015-09-30"}
TMS = morecantile.tms.get("WebMercatorQuad")


def reference_tile(cogs: list[str], tile, rescale, colormap: str | None = None, fmt: str = "PNG") -> bytes:
    """The tile as rio-tiler draws it from the COGs (what titiler would serve)."""
    images = []
    for cog in cogs:
        with Reader(cog) as src:
            images.append(src.tile(tile.x, tile.y, tile.z, tilesize=256))
    img = ImageData.create_from_list(images).rescale(in_range=rescale)
    return img.render(img_format=fmt, colormap=cmap.get(colormap) if colormap else None)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


@pytest.fixture(scope="module")
def rgb_job(samples, tmp_path_factory):
    """A median composite with a pyramid of zooms 12-15, run through the CLI."""
    out = tmp_path_factory.mktemp("pyramid")
    result = run_cli("composite", "-c", COLLECTION, "--bbox", SLOVENIA["bbox"], "--datetime", SLOVENIA["datetime"],
                     "--method", "median", "--bands", "red,green,blue", "--index", "NDVI",
                     "--pyramid", "12-15", "--output", str(out), "--output-collection", "pyramid-rgb", "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


@pytest.fixture
def static_server(rgb_job):
    """A plain static file server over the output root (as a bucket website or CDN would be)."""
    out, _ = rgb_job
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_served_tiles_are_the_rio_tiler_render_of_the_cogs(rgb_job, static_server):
    out, report = rgb_job
    label = report["steps"][0]["label"]
    template = report["outputs"]["tiles"][label]
    cogs = [report["outputs"]["cogs"][label][b] for b in ("red", "green", "blue")]
    summary = report["pyramid"][label]
    assert summary["minzoom"] == 12 and summary["maxzoom"] == 15 and summary["tiles"] > 0
    root = Path(template.split("{z}")[0])
    written = sorted(root.rglob("*.png"))
    assert len(written) == summary["tiles"]
    assert {int(p.relative_to(root).parts[0]) for p in written} == {12, 13, 14, 15}
    rel = Path(template).relative_to(out).as_posix()
    for path in written[:: max(1, len(written) // 6)]:  # a few tiles of every zoom
        z, x, y = (int(v) for v in path.relative_to(root).with_suffix("").parts)
        with urllib.request.urlopen(f"{static_server}/{rel.format(z=z, x=x, y=y)}") as answer:
            assert answer.headers["Content-Type"] == "image/png"
            served = answer.read()
        assert served == path.read_bytes()
        expected = reference_tile(cogs, morecantile.Tile(x, y, z), [(0.0, 0.3)])
        assert np.array_equal(pixels(served), pixels(expected))
        assert pixels(served)[..., 3].any()  # no empty tile is written
    doc = json.loads((root / "tilejson.json").read_text())
    assert doc["tilejson"] == "3.0.0" and doc["tiles"] == [template]
    assert (doc["minzoom"], doc["maxzoom"]) == (12, 15)
    west, south, east, north = doc["bounds"]
    assert west < 14.5514 + 1e-3 and east > 14.5642 - 1e-3 and south < 45.8659 + 1e-3 and north > 45.8750 - 1e-3


def test_the_item_carries_the_tile_template(samples, rgb_job):
    _, report = rgb_job
    label = report["steps"][0]["label"]
    item = samples.get_item("pyramid-rgb", report["items"][0])
    links = {link["rel"]: link for link in item["links"] if link["rel"] in ("xyz", "tilejson")}
    assert links["xyz"]["href"] == report["outputs"]["tiles"][label]
    assert links["xyz"]["href"].endswith("/{z}/{x}/{y}.png") and links["xyz"]["type"] == "image/png"
    assert links["tilejson"]["href"] == item["assets"]["tilejson"]["href"] == report["outputs"]["tilejson"][label]
    assert "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json" in item["stac_extensions"]
    first = next(Path(links["xyz"]["href"].split("{z}")[0]).rglob("*.png"))
    z, x, y = first.with_suffix("").parts[-3:]
    assert Path(links["xyz"]["href"].format(z=z, x=x, y=y)) == first
    collection = samples.get_collection("pyramid-rgb")
    assert collection["item_assets"]["tilejson"]["type"] == "application/json"


def test_rerunning_the_job_keeps_its_pyramid(samples, rgb_job):
    out, report = rgb_job
    spec = build_spec(**SLOVENIA, method="median", bands=["red", "green", "blue"], indices=["NDVI"],
                      pyramid="12-15", output=str(out), output_collection="pyramid-rgb")
    assert spec.job_id() == report["job_id"]
    again = run_composite(spec, samples.settings, workers=1)
    assert again["pyramid"] == report["pyramid"] and again["outputs"]["tiles"] == report["outputs"]["tiles"]


def _synthetic_cog(path: Path) -> None:
    """A float32 COG in EPSG:3857 over 2x2 zoom-14 tiles near (0, 0), its west half nodata (NaN)."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    x0, y0, _, _ = TMS.xy_bounds(morecantile.Tile(8192, 8191, 14))
    res = (TMS.xy_bounds(morecantile.Tile(8192, 8191, 14)).right - x0) / 256
    data = np.linspace(0.0, 1.0, 512 * 512, dtype="float32").reshape(512, 512)
    data[:, :256] = np.nan
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=512, height=512, count=1, dtype="float32", crs="EPSG:3857",
                       transform=from_origin(x0, y0 + 256 * res, res, res), nodata=float("nan")) as dst:
        dst.write(data, 1)
    cog_translate(str(tmp), str(path), cog_profiles.get("deflate"), quiet=True)
    tmp.unlink()


def test_empty_tiles_are_skipped_and_a_rerun_only_draws_what_is_missing(tmp_path):
    cog = tmp_path / "value.tif"
    _synthetic_cog(cog)
    render = pyramid.resolve_render(PyramidSpec.model_validate({"zooms": "14-15", "rescale": ["0,1"],
                                                                "colormap_name": "viridis"}),
                                    ["value"], {"value": "float32"})
    with rasterio.open(cog) as src:
        from rasterio.warp import transform_bounds

        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    dst = tmp_path / "tiles"
    first = pyramid.write_pyramid({"value": str(cog)}, render, bounds, 14, 15, dst, "t/{z}/{x}/{y}.png", name="t")
    files = sorted(dst.rglob("*.png"))
    # the east half has data: 1 of 2 columns at z14 (x2 rows), 2 of 4 at z15 (x4 rows)
    assert first["tiles"] == len(files) == 2 + 8 and first["empty"] >= 2 + 8
    assert all(int(p.parent.name) >= 8193 * 2 ** (int(p.parent.parent.name) - 14) for p in files)
    tile = morecantile.Tile(16386, 16383, 15)
    drawn = (dst / "15" / "16386" / "16383.png").read_bytes()
    assert np.array_equal(pixels(drawn), pixels(reference_tile([str(cog)], tile, [(0.0, 1.0)], "viridis")))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    files[0].unlink()
    again = pyramid.write_pyramid({"value": str(cog)}, render, bounds, 14, 15, dst, "t/{z}/{x}/{y}.png", name="t")
    assert again == first and files[0].exists()
    assert all(p.stat().st_mtime_ns == stamps[p] for p in files[1:])  # kept, not redrawn
    assert not list(dst.rglob("*.tmp"))
    doubled = pyramid.resolve_render(PyramidSpec.model_validate({"zooms": "15", "expression": "b1*2",
                                                                 "rescale": ["0,2"]}), ["value"], {"value": "float32"})
    with Reader(str(cog)) as src:
        expected = src.tile(tile.x, tile.y, tile.z, tilesize=256, expression="b1*2").rescale(
            in_range=[(0.0, 2.0)]).render(img_format="PNG")
    drawn = pyramid.render_tile(pyramid.OutputReader({"value": str(cog)}), tile, doubled)
    assert np.array_equal(pixels(drawn), pixels(expected))


def test_a_pyramid_that_does_not_fit_the_outputs_is_refused_before_the_job(samples, tmp_path):
    for pyramid_param, message in (({"zooms": "12-14", "bands": ["nir"]}, "'nir' is not an output"),
                                   ({"zooms": "12-14", "bands": ["red", "NDVI"]}, "one band"),
                                   ({"zooms": "12-14", "bands": ["red", "green", "blue"], "colormap_name": "viridis"},
                                    "a colormap draws one band"),
                                   ({"zooms": "12-14", "bands": ["NDVI"], "expression": "b1*b2", "rescale": ["0,1"]},
                                    "uses b2, but 1 band"),
                                   ({"zooms": "12-14", "bands": ["red"], "expression": "red/2", "rescale": ["0,1"]},
                                    "name the bands b1..b1")):
        spec = build_spec(**SLOVENIA, method="median", bands=["red", "green", "blue"], indices=["NDVI"],
                          pyramid=pyramid_param, output=str(tmp_path))
        with pytest.raises(InvalidInput, match=message):
            check(spec, samples.settings)
    assert pyramid.check_size((14.5514, 45.8659, 14.5642, 45.8750), PyramidSpec.model_validate("0-22")) < 50_000
    with pytest.raises(InvalidInput, match=r"make 5,\d{3},\d{3} tiles \(at most 1,000,000\)"):  # the world, zooms 0-11
        pyramid.check_size((-180, -85, 180, 85), PyramidSpec.model_validate("0-11"))
    result = run_cli("composite", "-c", COLLECTION, "--bbox", SLOVENIA["bbox"], "--datetime", SLOVENIA["datetime"],
                     "--method", "median", "--pyramid-format", "webp", "--output", str(tmp_path))
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].endswith(
        "--pyramid-format needs --pyramid Z0-Z1")


def test_a_job_failing_in_its_pyramid_leaves_no_tiles_and_no_item(samples, tmp_path, monkeypatch):
    spec = build_spec(**SLOVENIA, method="median", indices=["NDVI"], bands=["red"], pyramid="12-15",
                      output=str(tmp_path), output_collection="pyramid-failing")
    drawn = []
    real = pyramid.render_tile

    def failing(reader, tile, render):  # the disk fills up after a few tiles
        if len(drawn) >= 5:
            raise OSError(28, "No space left on device")
        drawn.append(tile)
        return real(reader, tile, render)

    monkeypatch.setattr(pyramid, "render_tile", failing)
    with pytest.raises(Exception, match="no space left"):
        run_composite(spec, samples.settings, workers=1)
    job = JobStore(samples.settings).get(spec.job_id())
    assert job["state"] == "failed" and len(drawn) == 5
    assert not list(tmp_path.rglob("*.png"))  # the staging area, half pyramid included, is gone
    assert "pyramid-failing" not in samples.collection_ids()
    monkeypatch.setattr(pyramid, "render_tile", real)
    report = run_composite(spec, samples.settings, workers=1)  # runs again from the start
    assert report["pyramid"][report["steps"][0]["label"]]["tiles"] == len(list(tmp_path.rglob("*.png")))
    item = samples.get_item("pyramid-failing", report["items"][0])
    assert any(link["rel"] == "xyz" for link in item["links"])


def test_a_webp_pyramid_on_s3_at_a_public_url(samples, s3_server, monkeypatch):
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="tiles")
    for key in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings(s3_endpoint=s3_server)
    spec = build_spec(**SLOVENIA, method="median", indices=["NDVI"],
                      pyramid={"zooms": "13-14", "format": "webp", "bands": ["NDVI"],
                               "url": "https://tiles.example.com/basemaps/"},
                      output="s3://tiles/basemaps", output_collection="pyramid-s3")
    report = run_composite(spec, settings, workers=1)
    job, label = report["job_id"], report["steps"][0]["label"]
    prefix = f"basemaps/{job}/run-1/{label}/tiles/"
    template = f"https://tiles.example.com/basemaps/{job}/run-1/{label}/tiles/{{z}}/{{x}}/{{y}}.webp"
    assert report["outputs"]["tiles"][label] == template
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tiles", Prefix=prefix)["Contents"]]
    tiles = [k for k in keys if k.endswith(".webp")]
    assert len(tiles) == report["pyramid"][label]["tiles"] > 0
    assert {k[len(prefix):].split("/")[0] for k in tiles} == {"13", "14"}
    doc = json.loads(s3.get_object(Bucket="tiles", Key=prefix + "tilejson.json")["Body"].read())
    assert doc["tiles"] == [template]
    key = tiles[-1]
    answer = s3.get_object(Bucket="tiles", Key=key)
    assert answer["ContentType"] == "image/webp"
    z, x, y = (int(v) for v in key[len(prefix):].removesuffix(".webp").split("/"))
    # NDVI's own range and colormap (stacube.core.indices.RENDER), read back from the COG on S3
    expected = reference_tile([report["outputs"]["cogs"][label]["NDVI"]], morecantile.Tile(x, y, z),
                              [(-0.2, 0.9)], "rdylgn", fmt="WEBP")
    assert np.array_equal(pixels(answer["Body"].read()), pixels(expected))
    item = samples.get_item("pyramid-s3", report["items"][0])
    assert [link["href"] for link in item["links"] if link["rel"] == "xyz"] == [template]
    assert os.environ["AWS_S3_ENDPOINT"].startswith("127.0.0.1:")


def test_outputs_in_the_served_root_get_a_files_url(samples, tmp_path):
    settings = Settings(output=str(tmp_path), public_url="https://cube.example.com")
    plan = check(build_spec(**SLOVENIA, method="median", pyramid="12-13"), settings)
    assert tasks.tiles_base(settings, plan) == "https://cube.example.com/files"
    other = check(build_spec(**SLOVENIA, method="median", pyramid="12-13", output=str(tmp_path / "elsewhere")),
                  settings)
    assert tasks.tiles_base(settings, other) is None


def test_a_pyramid_job_over_http_is_served_from_files(samples):
    from fastapi.testclient import TestClient
    from urllib.parse import urlparse

    from stacube_services.app import create_app

    body = {**SLOVENIA, "method": "median", "bands": ["red", "green", "blue"], "pyramid": "13-14",
            "output_collection": "pyramid-http"}
    with TestClient(create_app(Settings(anonymous_jobs=True, max_jobs=1000)), raise_server_exceptions=False) as client:
        answer = client.post("/jobs", json=body)
        assert answer.status_code in (200, 202), answer.text
        job_id = answer.json()["id"]
        for _ in range(600):
            job = client.get(f"/jobs/{job_id}").json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        assert job["state"] == "completed", job["error"]
        label = job["report"]["steps"][0]["label"]
        template = job["downloads"]["tiles"][label]
        # at the site's public URL (STACUBE_PUBLIC_URL, else its host and port): /files of `stacube up`
        assert template == f"http://127.0.0.1:8000/files/{job_id}/{label}/tiles/{{z}}/{{x}}/{{y}}.png"
        item = client.get(f"/stac/collections/pyramid-http/items/{job_id}_{label}").json()
        assert [link["href"] for link in item["links"] if link["rel"] == "xyz"] == [template]
        xyz = template
        tilejson = client.get(urlparse(job["downloads"]["tilejson"][label]).path).json()
        assert tilejson["tiles"] == [xyz]
        tiles = TMS.tiles(*tilejson["bounds"], zooms=[14])
        served = [client.get(urlparse(template.format(z=t.z, x=t.x, y=t.y)).path) for t in tiles]
        assert served and all(r.status_code == 200 and r.headers["content-type"] == "image/png" for r in served)
