"""A process job with a ``pyramid`` block in its configuration: its output drawn as static
XYZ tiles beside the COGs, as rio-tiler draws them, and the tile template on the item."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from rio_tiler.colormap import cmap
from rio_tiler.io import Reader
from typer.testing import CliRunner

from stacube.cli.main import app
from stacube.jobs.process_config import read_config


def test_a_process_job_writes_a_pyramid_of_one_output(samples, project, write_config):
    config = write_config(project, parameters={"radius": 1}, output_collection="focal-pyramid",
                          pyramid={"zooms": "13-14", "bands": ["focal"], "rescale": ["-0.2,0.9"],
                                   "colormap_name": "rdylgn"})
    spec, _ = read_config(config)
    assert (spec.pyramid.minzoom, spec.pyramid.maxzoom, spec.pyramid.colormap_name) == (13, 14, "rdylgn")
    result = CliRunner().invoke(app, ["process", "run", str(config), "--workers", "1", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    label = report["steps"][0]["label"]
    template = report["outputs"]["tiles"][label]
    tiles = sorted(Path(template.split("{z}")[0]).rglob("*.png"))
    assert len(tiles) == report["pyramid"][label]["tiles"] > 0
    path = tiles[-1]
    z, x, y = (int(v) for v in path.with_suffix("").parts[-3:])
    with Reader(report["outputs"]["cogs"][label]["focal"]) as src:
        expected = src.tile(x, y, z, tilesize=256).rescale(in_range=[(-0.2, 0.9)]).render(
            img_format="PNG", colormap=cmap.get("rdylgn"))
    decode = lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))  # noqa: E731
    assert np.array_equal(decode(path.read_bytes()), decode(expected))
    item = samples.get_item("focal-pyramid", report["items"][0])
    assert [link["href"] for link in item["links"] if link["rel"] == "xyz"] == [template]
