"""The real ``cdk synth`` command line, offline, with bundling skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from infra_helpers import REPO_ROOT

CDK = REPO_ROOT / "infra" / "node_modules" / ".bin" / "cdk"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(
    not CDK.exists(), reason="infra/node_modules is absent: run `npm ci --prefix infra`"
)
def test_cdk_synth_cli(tmp_path: Path, no_docker: Path) -> None:
    out = tmp_path / "cdk.out"
    env = {
        **os.environ,
        "STACUBE_CDK_PYTHON": sys.executable,  # the interpreter running these tests
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
    result = subprocess.run(
        [
            "npx",
            "--prefix",
            "infra",
            "cdk",
            "synth",
            "-c",
            "bundling=false",
            "-c",
            "stage=ci",
            "--no-notices",
            "--quiet",
            "--output",
            str(out),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    template = json.loads((out / "stacube-ci.template.json").read_text())
    types = [r["Type"] for r in template["Resources"].values()]
    assert types.count("AWS::Lambda::Function") == 11  # 8 of stacube, the bootstrap, 2 of CDK
    assert "StacUrl" in template["Outputs"]
    assert not no_docker.exists(), "cdk synth invoked docker"
