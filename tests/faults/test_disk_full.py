"""A compositing job whose output directory is a tiny filesystem that fills up.

The output path is a 96 KiB tmpfs (mounted by the test, which runs as root; skipped where
mounting is not permitted). ``stacube composite`` stops with one line naming the cause and exit
code 3 (StorageError); nothing is registered, no output directory appears and the job's staging
area is removed; the job is recorded as failed with the same reason.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from stacube.jobs.spec import build_spec
from stacube.jobs.state import JobStore

PARAMS = dict(collections=["sentinel-2-l1c-eolearn-sample"], bbox="14.5514,45.8659,14.5642,45.8750",
              datetime="2015-07-01/2015-09-30", method="median", bands=["red", "green", "blue", "nir"],
              indices=["NDVI"], output_collection="disk-full-test")


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_output_disk_fails_the_job_with_one_line_and_registers_nothing(samples, cli, tiny_disk):
    before = samples.item_counts()
    out = cli("composite", "--collection", PARAMS["collections"][0], f"--bbox={PARAMS['bbox']}",
              "--datetime", PARAMS["datetime"], "--method", "median", "--bands", "red,green,blue,nir",
              "--index", "NDVI", "--output", str(tiny_disk), "--output-collection", "disk-full-test",
              "--workers", "1")
    assert out.returncode == 3, (out.returncode, out.stdout[-500:], out.stderr[-2000:])
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "no space left" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert samples.item_counts() == before and "disk-full-test" not in samples.collection_ids()
    spec = build_spec(**PARAMS, output=str(tiny_disk))
    job_id = spec.job_id()
    leftovers = sorted(p.relative_to(tiny_disk).as_posix() for p in tiny_disk.rglob("*"))
    assert not [p for p in leftovers if p.startswith(job_id) or p.startswith(f"tmp/{job_id}")], leftovers
    job = JobStore(samples.settings).get(job_id, full=False)
    assert job["state"] == "failed" and "no space left" in job["error"]
